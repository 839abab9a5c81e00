export { startTestNats, dockerAvailable, NATS_IMAGE, type TestNats } from "./nats.js";
export { waitFor } from "./wait.js";
export {
  startOtlpReceiver,
  type OtlpReceiver,
  type OtlpReceiverOptions,
  type OtlpSnapshot,
  type OtlpRequestRecord,
  type OtlpValue,
  type OtlpAttributes,
  type ReceivedScope,
  type ReceivedSpan,
  type ReceivedSpanEvent,
  type ReceivedSpanLink,
  type ReceivedDataPoint,
  type ReceivedSeriesPoint,
  type ReceivedMetric,
  type ReceivedLog,
  type MetricType,
  type SpanKindName,
  type StatusCodeName,
  type TemporalityName,
} from "./otlp.js";
export {
  startTestCluster,
  type ClusterNode,
  type TestCluster,
  type TestClusterOptions,
} from "./cluster.js";
