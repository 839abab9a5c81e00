export { Router, assign } from "./router.js";
