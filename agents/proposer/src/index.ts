export { planTask, PROGRAM_NAMES, type PlannedStep } from "./planner.js";
export { Proposer, proposalFor, type NextStep } from "./proposer.js";
export { planNextWithLlm, offeredTools, type HistoryItem } from "./llm-planner.js";
