import { describe, expect, it } from "vitest";
import { errors } from "@nats-io/transport-node";
import { JetStreamApiError, JetStreamError } from "@nats-io/jetstream";
import { jserrors } from "@nats-io/jetstream/internal";
import { GateError, TransientError, TriasError, ValidationError } from "@trias/protocol";
import {
  UNKNOWN_FAILURE_ATTEMPTS,
  backoffMs,
  classifyFailure,
  failureAction,
  type FailureClass,
} from "./index.js";

const api = (status: number, errCode: number) =>
  new JetStreamApiError({ code: status, err_code: errCode, description: "from the server" });
const withCode = (code: string) => Object.assign(new Error("socket"), { code });

describe("failure", () => {
  const cases: [string, unknown, FailureClass, string][] = [
    // What the issue saw: an executor resumed while nats-server was down.
    ["nats request timeout", new errors.TimeoutError(), "transient", "nats_timeout"],
    [
      "request error around a timeout",
      new errors.RequestError("timeout", { cause: new errors.TimeoutError() }),
      "transient",
      "nats_request",
    ],
    [
      "connection closed",
      new errors.ClosedConnectionError(),
      "transient",
      "nats_connection_closed",
    ],
    [
      "connection draining",
      new errors.DrainingConnectionError(),
      "transient",
      "nats_connection_draining",
    ],
    [
      "no responders (JetStream away)",
      new errors.NoRespondersError("$JS.API.INFO"),
      "transient",
      "nats_no_responders",
    ],
    ["connection error", new errors.ConnectionError("refused"), "transient", "nats_connection"],
    ["JetStream temporarily unavailable (503)", api(503, 10008), "transient", "jetstream_10008"],
    ["KV compare-and-set lost (400, 10071)", api(400, 10071), "transient", "jetstream_10071"],
    ["stream not found while recreated (404)", api(404, 10059), "transient", "jetstream_10059"],
    [
      "JetStream not enabled",
      new jserrors.JetStreamNotEnabled("off"),
      "transient",
      "jetstream_not_enabled",
    ],
    [
      "consumer failure (heartbeats missed)",
      new JetStreamError("heartbeats missed"),
      "transient",
      "jetstream",
    ],
    ["TCP reset from a tool's server", withCode("ECONNRESET"), "transient", "ECONNRESET"],
    [
      "fetch timeout (AbortSignal.timeout)",
      new DOMException("t", "TimeoutError"),
      "transient",
      "timeout",
    ],
    [
      "retryable TriasError",
      new TransientError("bus_unavailable", "down"),
      "transient",
      "bus_unavailable",
    ],
    [
      "TriasError coded timeout, not marked retryable",
      new TriasError("timeout", "took too long"),
      "transient",
      "timeout",
    ],
    [
      "a plain wrapper around a lost connection",
      new Error("ledger read failed", { cause: new errors.ClosedConnectionError() }),
      "transient",
      "nats_connection_closed",
    ],
    // What is wrong with the message itself.
    ["gate refusal", new GateError("quorum_not_met", "1 of 2"), "refusal", "quorum_not_met"],
    ["schema violation", new ValidationError("schema_invalid", "bad"), "refusal", "schema_invalid"],
    [
      "a refusal wrapped in a plain error",
      new Error("while handling", { cause: new GateError("signature_invalid", "forged") }),
      "refusal",
      "signature_invalid",
    ],
    // Neither: a bug or the deployment's problem.
    ["TypeError (a bug)", new TypeError("x is undefined"), "unknown", "internal"],
    ["a thrown string", "oops", "unknown", "internal"],
    ["internal TriasError", new TriasError("internal", "?"), "unknown", "internal"],
    ["message too large for the stream (400)", api(400, 10054), "unknown", "jetstream_10054"],
    [
      "permission violation (deployment)",
      new errors.PermissionViolationError("no", "publish", "trias.x.y.z"),
      "unknown",
      "internal",
    ],
    [
      "authorization (deployment)",
      new errors.AuthorizationError("bad creds"),
      "unknown",
      "internal",
    ],
    ["unknown socket code", withCode("EACCES"), "unknown", "internal"],
  ];
  it.each(cases)("failure - %s is %s", (_what, e, cls, code) => {
    expect(classifyFailure(e)).toEqual({ class: cls, code });
  });

  it("failure - a cause chain that loops ends as unknown", () => {
    const a = new Error("a");
    const b = new Error("b", { cause: a });
    (a as { cause?: unknown }).cause = b;
    expect(classifyFailure(a).class).toBe("unknown");
  });

  const actions: [FailureClass, number, "retry" | "refuse"][] = [
    ["transient", 1, "retry"],
    ["transient", 1_000, "retry"],
    ["refusal", 1, "refuse"],
    ["unknown", 1, "retry"],
    ["unknown", UNKNOWN_FAILURE_ATTEMPTS - 1, "retry"],
    ["unknown", UNKNOWN_FAILURE_ATTEMPTS, "refuse"],
  ];
  it.each(actions)("failure - %s at delivery %i: %s", (cls, n, want) => {
    const a = failureAction({ class: cls, code: "x" }, n);
    expect(a.type).toBe(want);
    if (a.type === "retry") expect(a.delayMs).toBe(backoffMs(n));
  });

  it("failure - backoff doubles from 250 ms and stops at 30 s", () => {
    expect([1, 2, 3, 8, 9, 50].map(backoffMs)).toEqual([250, 500, 1000, 30_000, 30_000, 30_000]);
  });
});
