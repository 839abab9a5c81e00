export { planTask, PROGRAM_NAMES, type PlannedStep } from "./planner.js";
export { Proposer, proposalFor, type Planner } from "./proposer.js";
