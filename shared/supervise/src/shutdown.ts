/**
 * Shutdown on a signal: a long command (demo, watch, console) registers what it must undo
 * (stop its stack, drain its connection) and every hook runs, newest first, before the
 * process exits with the shell's code for the signal (128 + its number: 130 for SIGINT,
 * 143 for SIGTERM). A second signal while the hooks run exits at once; the `exit` hook in
 * supervisor.ts still signals every child left.
 */

type Hook = () => Promise<void> | void;

const hooks: Hook[] = [];
let installed = false;
let shuttingDown = false;

/** Signals a long command answers by stopping everything it started. */
export const SHUTDOWN_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
export type ShutdownSignal = (typeof SHUTDOWN_SIGNALS)[number];

const SIGNAL_NUMBER: Record<ShutdownSignal, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

/** The exit code a shell reports for a process ended by `signal`. */
export function signalExitCode(signal: ShutdownSignal): number {
  return 128 + SIGNAL_NUMBER[signal];
}

/**
 * How long all hooks together may take before the process exits anyway: a stack's stop is
 * bounded by the supervisor's grace period (5 s) plus draining NATS connections.
 * @default 15000
 */
export const SHUTDOWN_TIMEOUT_MS = 15_000;

async function runHooks(signal: ShutdownSignal): Promise<void> {
  const pending = hooks.splice(0).reverse();
  const all = (async () => {
    for (const h of pending) {
      try {
        await h();
      } catch (e) {
        process.stderr.write(`shutdown: ${e instanceof Error ? e.message : String(e)}\n`);
      }
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([all, new Promise<void>((r) => (timer = setTimeout(r, SHUTDOWN_TIMEOUT_MS)))]);
  clearTimeout(timer);
  process.exit(signalExitCode(signal));
}

function install(): void {
  if (installed) return;
  installed = true;
  for (const sig of SHUTDOWN_SIGNALS) {
    process.on(sig, () => {
      if (shuttingDown) process.exit(signalExitCode(sig));
      shuttingDown = true;
      void runHooks(sig);
    });
  }
}

/**
 * Run `hook` when the process gets SIGINT, SIGTERM or SIGHUP, then exit. Returns a function
 * that removes the hook (call it once the command has undone its work itself).
 */
export function onShutdown(hook: Hook): () => void {
  install();
  hooks.push(hook);
  return () => {
    const i = hooks.indexOf(hook);
    if (i >= 0) hooks.splice(i, 1);
  };
}
