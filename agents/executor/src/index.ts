export { Executor, EFFECTS_BUCKET, effectKey } from "./executor.js";
