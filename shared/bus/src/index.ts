export {
  Bus,
  ACK,
  backoffMs,
  isRevisionConflict,
  DEFAULT_MAX_ACK_PENDING,
  type BusOptions,
  type StreamOptions,
  type Delivery,
  type Disposition,
  type StoredMessage,
  type ConsumerOptions,
  type ConsumeOptions,
  type Subscription,
} from "./bus.js";
export {
  natsConfig,
  publishAllow,
  AGENT_NATS_ROLES,
  EXECUTOR_BUCKETS,
  REVIEW_CLAIMS_BUCKET,
  RECEIPTS_BUCKET,
  type NatsUser,
  type NatsUserRole,
  type NatsConfigOptions,
} from "./nats-config.js";
export {
  LocalNatsServer,
  findNatsServer,
  freePort,
  NATS_INSTALL_HINT,
  type LocalServerOptions,
} from "./local-server.js";
