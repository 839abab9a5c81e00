import { describe, expect, it } from "vitest";
import {
  ConnectionError,
  DrainingConnectionError,
  NoRespondersError,
  PermissionViolationError,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";
import { JetStreamApiError, JetStreamApiCodes } from "@nats-io/jetstream";
import { TriasError } from "@trias/protocol";
import { isTransientBusError } from "./transient.js";

const api = (status: number, err_code: number) =>
  new JetStreamApiError({ code: status, err_code, description: "from the server" });

describe("isTransientBusError", () => {
  const table: [string, unknown, boolean][] = [
    ["a request timed out", new TimeoutError(), true],
    ["no responder (a leader being elected)", new NoRespondersError("$JS.API.STREAM.INFO.x"), true],
    [
      "a request error caused by no responders",
      new RequestError("no responders", { cause: new NoRespondersError("$KV.x.y") }),
      true,
    ],
    ["the connection dropped", new ConnectionError("connection refused"), true],
    ["the connection is draining", new DrainingConnectionError(), true],
    ["JetStream temporarily unavailable (503)", api(503, 10008), true],
    ["a JetStream request timeout (408)", api(408, 0), true],
    [
      "a timeout wrapped by the caller",
      new Error("read failed", { cause: new TimeoutError() }),
      true,
    ],
    ["stream not found", api(404, JetStreamApiCodes.StreamNotFound), false],
    [
      "wrong last sequence (a lost race)",
      api(400, JetStreamApiCodes.StreamWrongLastSequence),
      false,
    ],
    ["a permission violation", new PermissionViolationError("denied", "publish", "trias.x"), false],
    ["a Trias validation error", new TriasError("config_invalid", "bad"), false],
    ["a plain error", new Error("bug"), false],
    ["not an error at all", "timeout", false],
    ["undefined", undefined, false],
  ];
  it.each(table)("%s -> %s", (_what, e, want) => {
    expect(isTransientBusError(e)).toBe(want);
  });
});
