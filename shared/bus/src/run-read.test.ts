import { describe, expect, it } from "vitest";
import { runReadGap, type ReadMessage, type RunCount } from "./run-read.js";

const ts = "trias.console.task_submitted.r";
const ta = "trias.router.tier_assigned.r";

const cases: {
  name: string;
  start: number | null;
  count: RunCount;
  read: ReadMessage[];
  gap: RegExp | null;
}[] = [
  {
    name: "every counted message read from the start",
    start: 10,
    count: { counts: { [ts]: 1, [ta]: 2 }, lastSeq: 20 },
    read: [
      { subject: ts, seq: 10 },
      { subject: ta, seq: 12 },
      { subject: ta, seq: 19 },
    ],
    gap: null,
  },
  {
    name: "messages stored after the count are extra, not a gap",
    start: 10,
    count: { counts: { [ts]: 1, [ta]: 1 }, lastSeq: 15 },
    read: [
      { subject: ts, seq: 10 },
      { subject: ta, seq: 12 },
      { subject: ta, seq: 30 },
    ],
    gap: null,
  },
  {
    name: "a later message does not stand in for one before the start",
    start: 10,
    count: { counts: { [ts]: 1, [ta]: 2 }, lastSeq: 15 },
    read: [
      { subject: ts, seq: 10 },
      { subject: ta, seq: 12 },
      { subject: ta, seq: 30 },
    ],
    gap: /1 message\(s\) on trias\.router\.tier_assigned\.r are stored before run r's task_submitted at seq 10/,
  },
  {
    name: "a subject the read did not see at all",
    start: 10,
    count: { counts: { [ts]: 1, "trias.proposer.step_proposed.r": 1 }, lastSeq: 15 },
    read: [{ subject: ts, seq: 10 }],
    gap: /step_proposed\.r are stored before/,
  },
  {
    name: "no start: nothing to read from",
    start: null,
    count: { counts: { [ta]: 1 }, lastSeq: 15 },
    read: [],
    gap: /holds no task_submitted of run r/,
  },
  {
    name: "a run with no message at all and no start",
    start: null,
    count: { counts: {}, lastSeq: 0 },
    read: [],
    gap: /holds no task_submitted/,
  },
];

describe("runReadGap", () => {
  for (const c of cases)
    it(`runReadGap - ${c.name}`, () => {
      const gap = runReadGap("r", c.start, c.count, c.read);
      if (c.gap === null) expect(gap).toBeNull();
      else expect(gap).toMatch(c.gap);
    });
});
