export {
  Supervisor,
  Supervised,
  track,
  livePids,
  DEFAULT_GRACE_MS,
  type ExitInfo,
  type SpawnOptions,
} from "./supervisor.js";
export {
  onShutdown,
  signalExitCode,
  SHUTDOWN_SIGNALS,
  SHUTDOWN_TIMEOUT_MS,
  type ShutdownSignal,
} from "./shutdown.js";
