export { Router, assign, emptyContext, type RunContext } from "./router.js";
