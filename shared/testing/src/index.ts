export { startTestNats, dockerAvailable, NATS_IMAGE, type TestNats } from "./nats.js";
export { waitFor } from "./wait.js";
export {
  startTestCluster,
  type ClusterNode,
  type TestCluster,
  type TestClusterOptions,
} from "./cluster.js";
