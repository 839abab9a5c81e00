import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { decode, decodeFrame, encode, parseMessage } from "@trias/protocol";
import { ReceiptChain, auditTrace, chainLinks, computeReceipt, type TraceEvent } from "./index.js";
import { TraceBuilder } from "./test-support.js";

/** The events a run_closed receipt covers (all before it) and the close itself. */
function sealed(t: TraceBuilder): { covered: TraceEvent[]; all: TraceEvent[] } {
  const all = t.events;
  const i = all.findIndex((e) => e.message.kind === "run_closed");
  return { covered: all.slice(0, i), all };
}

function flip(ev: TraceEvent, at: number): TraceEvent {
  const frame = new Uint8Array(ev.frame);
  frame[at] = (frame[at] ?? 0) ^ 0x01;
  return { ...ev, frame };
}

describe("receipt - behaviour", () => {
  it("receipt - links follow the published definition, so receipts issued earlier still audit", () => {
    // Written out from the definition, independently of receipt.ts: h0 = sha256("trias-receipt-v1|"
    // + run), h_i = sha256(h_{i-1} || u64be(seq) || sha256(subject) || sha256(frame)).
    const sha = (...parts: (string | Uint8Array)[]) => {
      const h = createHash("sha256");
      for (const p of parts) h.update(p);
      return h.digest();
    };
    const events = [
      { seq: 1, subject: "trias.console.task_submitted.run-é", frame: new Uint8Array([1, 2, 3]) },
      { seq: 2 ** 40 + 3, subject: "trias.proposer.step_proposed.run-é", frame: new Uint8Array(0) },
    ];
    let h: Buffer = sha("trias-receipt-v1|run-é");
    const expected = events.map((ev) => {
      const seq = Buffer.alloc(8);
      seq.writeBigUInt64BE(BigInt(ev.seq));
      h = sha(h, seq, sha(ev.subject), sha(ev.frame));
      return h.toString("hex");
    });
    expect(chainLinks(events, "run-é")).toEqual(expected);
  });

  it("recomputes byte-identically, twice and from a second decoding of the stored bytes", () => {
    const t = TraceBuilder.linear("run-receipt", 3);
    const { covered } = sealed(t);
    const a = computeReceipt(covered);
    const b = computeReceipt(covered);
    expect(b).toEqual(a);
    expect(encode(b)).toEqual(encode(a));
    // A second process only has the stored bytes: rebuild every event from them alone.
    const reread: TraceEvent[] = covered.map((e) => ({
      seq: e.seq,
      subject: e.subject,
      frame: new Uint8Array(Buffer.from(e.frame)),
      message: parseMessage(decode(decodeFrame(e.frame).payload)),
    }));
    expect(encode(computeReceipt(reread))).toEqual(encode(a));
    expect(a).toMatchObject({
      alg: "sha256-chain/v1",
      events: covered.length,
      firstSeq: 1,
      lastSeq: covered.length,
    });
    expect(a.head).toBe(chainLinks(covered).at(-1));
  });

  it("receipt - built one event at a time, it gives what the whole-trace functions give, at every cut", () => {
    const t = TraceBuilder.linear("run-incremental", 3, ["light", "standard", "full"]);
    const chain = new ReceiptChain("run-incremental");
    expect(chain.upTo(0)).toEqual({
      receipt: computeReceipt([], "run-incremental"),
      links: [],
    });
    for (const ev of t.events) chain.add(ev);
    expect(chain.size).toBe(t.events.length);
    for (const ev of t.events) {
      const upto = t.events.filter((e) => e.seq <= ev.seq);
      expect(chain.upTo(ev.seq)).toEqual({
        receipt: computeReceipt(upto),
        links: chainLinks(upto),
      });
    }
  });

  it("audits a clean trace against the receipt its run_closed carries", () => {
    const t = TraceBuilder.linear("run-audit", 2);
    t.reject("executor", "late message refused after close");
    const r = auditTrace(t.events, null, { links: chainLinks(sealed(t).covered) });
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.covered).toBe(sealed(t).covered.length);
    // The refusal after the close is not under the receipt: listed as a record, a warning.
    expect(r.after).toEqual([
      expect.objectContaining({ kind: "message_rejected", verdict: "record" }),
    ]);
    expect(r.closedAt).toBe(sealed(t).covered.length + 1);
    expect(r.warnings).toHaveLength(1);
  });

  it("changes the head on any single flipped byte, and audit names that event", () => {
    const t = TraceBuilder.linear("run-flip", 2, ["light", "standard"]);
    const { covered, all } = sealed(t);
    const receipt = computeReceipt(covered);
    const links = chainLinks(covered);
    let cases = 0;
    covered.forEach((ev, k) => {
      for (let at = 0; at < ev.frame.length; at++) {
        const tampered = all.map((e, i) => (i === k ? flip(e, at) : e));
        expect(computeReceipt(tampered.slice(0, covered.length)).head).not.toBe(receipt.head);
        const r = auditTrace(tampered, null, { links });
        expect(r.ok).toBe(false);
        expect(r.firstBad).toMatchObject({ seq: ev.seq, index: k });
        cases++;
      }
    });
    expect(cases).toBeGreaterThan(1000);
  });

  it("names a deleted, an inserted and a moved event", () => {
    const t = TraceBuilder.linear("run-edit", 3);
    const { covered, all } = sealed(t);
    const links = chainLinks(covered);
    const closeAt = covered.length;

    const deleted = all.filter((_, i) => i !== 4);
    expect(auditTrace(deleted, null, { links }).firstBad).toMatchObject({
      index: 4,
      seq: covered[5]?.seq,
    });

    const dropLast = [...covered.slice(0, -1), ...all.slice(closeAt)];
    expect(auditTrace(dropLast, null, { links }).firstBad).toMatchObject({
      index: closeAt - 1,
      reason: expect.stringMatching(/missing/),
    });

    const swapped = [...all];
    [swapped[2], swapped[3]] = [swapped[3] as TraceEvent, swapped[2] as TraceEvent];
    const r = auditTrace(swapped, null, { links });
    expect(r.firstBad).toMatchObject({ index: 2, seq: covered[3]?.seq });

    const resubject = all.map((e, i) =>
      i === 6 ? { ...e, subject: e.subject.replace("trias.", "trias.x") } : e,
    );
    expect(auditTrace(resubject, null, { links }).firstBad).toMatchObject({ index: 6 });
  });

  it("covers the stream position: a changed seq, even still in order, is named", () => {
    const t = new TraceBuilder("run-seq", 10);
    t.submit();
    t.step(0, 1, "standard");
    t.close();
    const { covered, all } = sealed(t);
    const links = chainLinks(covered);
    const moved = all.map((e, i) => (i === 3 ? { ...e, seq: e.seq + 1 } : e));
    expect(auditTrace(moved, null, { links }).firstBad).toMatchObject({
      index: 3,
      seq: (covered[3]?.seq ?? 0) + 1,
    });
    const gone = all.filter((_, i) => i !== 0);
    expect(auditTrace(gone, null, { links }).firstBad).toMatchObject({ index: 0 });
    // Without links a lost first event is still named by the receipt's first seq.
    expect(auditTrace(gone).firstBad).toMatchObject({
      index: 0,
      reason: expect.stringMatching(/starts at seq 10/),
    });
  });

  it("without published links still fails on any change, and says it cannot name the event", () => {
    const t = TraceBuilder.linear("run-nolinks", 2);
    const { all } = sealed(t);
    expect(auditTrace(all).ok).toBe(true);
    const r = auditTrace(all.map((e, i) => (i === 3 ? flip(e, 40) : e)));
    expect(r.ok).toBe(false);
    expect(r.problems[0]).toMatch(/differs from the signed head/);
  });

  it("seeds the chain with the run id: the same events under another run do not verify", () => {
    const t = TraceBuilder.linear("run-seed", 1);
    const { covered } = sealed(t);
    expect(computeReceipt(covered, "another-run").head).not.toBe(computeReceipt(covered).head);
    expect(computeReceipt([], "empty")).toMatchObject({ events: 0, firstSeq: 0, lastSeq: 0 });
  });

  it("reports a trace with no run_closed as unaudited, never throwing", () => {
    const t = new TraceBuilder("run-open");
    t.submit();
    t.propose(0, 1);
    const r = auditTrace(t.events);
    expect(r.ok).toBe(false);
    expect(r.receipt).toBeNull();
    const odd = auditTrace([{ ...(t.events[0] as TraceEvent), seq: -3 }], computeReceipt(t.events));
    expect(odd.ok).toBe(false);
    expect(odd.firstBad?.index).toBe(0);
  });
});

describe("audit - between the receipt and the close", () => {
  /**
   * A run closed while its step was still under review: the executor refused the step (a
   * record, no transition) and the verifier closed the run on it, while two reviewers were
   * still reviewing.
   */
  function closedWhileReviewed(between: (t: TraceBuilder) => void): TraceBuilder {
    const t = new TraceBuilder("run-between");
    t.submit();
    t.propose(0, 1);
    t.assign(0, "full");
    t.emit("executor", "message_rejected", 0, 0, {
      code: "policy_digest_mismatch",
      reason: "step was routed under policy aaaa but this executor enforces bbbb",
      subject: `trias.router.tier_assigned_review.${t.run}`,
      seq: t.events.at(-1)!.seq,
      messageId: null,
      sender: null,
      by: "executor",
    });
    // The verifier seals the run up to the refusal; the reviewers answer before its close is stored.
    const receipt = computeReceipt(t.events, t.run);
    between(t);
    t.emit("verifier", "run_closed", null, 0, {
      outcome: "rejected",
      reason: "human rejected step 0",
      steps: 1,
      receipt,
      topology: null,
    });
    return t;
  }

  it("audit - a reviewer's verdict stored between the receipt and the close is late, judged against the sealed run", () => {
    const t = closedWhileReviewed((x) => {
      x.verdict(0, "reviewer-1");
      x.verdict(0, "reviewer-2");
    });
    const r = auditTrace(t.events);
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.after.map((a) => a.verdict)).toEqual(["late", "late"]);
    expect(r.state.outcome).toBe("rejected");
  });

  it("audit - an execution stored between the receipt and the close is tampering", () => {
    const t = closedWhileReviewed((x) => {
      x.execute(0);
    });
    const r = auditTrace(t.events);
    expect(r.ok).toBe(false);
    expect(r.after).toEqual([
      expect.objectContaining({
        verdict: "tampering",
        reason: expect.stringMatching(/nothing may follow run_closed/),
      }),
    ]);
  });
});

describe("audit - after the receipt", () => {
  /** A clean 1-step full-tier run (two approvals of three reviewers), sealed. */
  function sealedRun(run: string): TraceBuilder {
    const t = new TraceBuilder(run);
    t.submit();
    t.step(0, 1, "full");
    t.close();
    return t;
  }
  /** Append a copy of `ev` at the next stream position (a duplicate or a splice). */
  function appendCopy(t: TraceBuilder, ev: TraceEvent, subject = ev.subject): TraceEvent {
    const last = t.events.at(-1) as TraceEvent;
    const copy = { ...ev, seq: last.seq + 1, subject };
    t.events.push(copy);
    return copy;
  }

  const cases: {
    name: string;
    tamper: (t: TraceBuilder) => TraceEvent;
    verdict: "late" | "record" | "tampering";
    reason: RegExp;
  }[] = [
    {
      name: "a slow reviewer's verdict",
      tamper: (t) => t.verdict(0, "reviewer-3"),
      verdict: "late",
      reason: /late verdict by reviewer-3/,
    },
    {
      name: "an agent's refusal record",
      tamper: (t) => t.reject("executor", "run closed"),
      verdict: "record",
      reason: /executor recorded refusing/,
    },
    {
      name: "an appended execution",
      tamper: (t) => t.execute(0, { attempt: 1 }),
      verdict: "tampering",
      reason: /nothing may follow run_closed/,
    },
    {
      name: "a second run_closed",
      tamper: (t) => t.close("failed"),
      verdict: "tampering",
      reason: /nothing may follow run_closed/,
    },
    {
      name: "a duplicate of a covered event",
      tamper: (t) => appendCopy(t, t.events[3] as TraceEvent),
      verdict: "tampering",
      reason: /duplicate/,
    },
    {
      name: "a verdict judged twice by one reviewer",
      tamper: (t) =>
        appendCopy(t, t.events.find((e) => e.message.kind === "verdict") as TraceEvent),
      verdict: "tampering",
      reason: /duplicate/,
    },
    {
      name: "an event spliced from another run",
      tamper: (t) => {
        const other = sealedRun("run-other");
        const ev = other.events[2] as TraceEvent;
        return appendCopy(t, ev, ev.subject.replace("run-other", t.run));
      },
      verdict: "tampering",
      reason: /belongs to run run-other/,
    },
    {
      name: "a frame that does not verify",
      tamper: (t) => {
        const ev = { ...appendCopy(t, t.events[1] as TraceEvent), message: null };
        t.events[t.events.length - 1] = ev as never;
        return ev as never;
      },
      verdict: "tampering",
      reason: /does not verify/,
    },
  ];

  for (const c of cases) {
    it(`audit - after the receipt, ${c.name} is ${c.verdict}`, () => {
      const t = sealedRun("run-after");
      expect(auditTrace(t.events).ok).toBe(true);
      const ev = c.tamper(t);
      const r = auditTrace(t.events);
      expect(r.after).toEqual([
        expect.objectContaining({
          seq: ev.seq,
          verdict: c.verdict,
          reason: expect.stringMatching(c.reason),
        }),
      ]);
      expect(r.ok).toBe(c.verdict !== "tampering");
      if (c.verdict === "tampering") {
        expect(r.firstBad).toMatchObject({ seq: ev.seq });
        expect(r.problems.join("\n")).toMatch(c.reason);
      } else {
        expect(r.warnings).toHaveLength(1);
      }
      // The receipt itself still verifies: what fails is what was stored after it.
      expect(r.recomputed.head).toBe(r.receipt?.head);
    });
  }

  it("audit - a transition stored between the receipt and its run_closed is not covered: it fails", () => {
    const t = new TraceBuilder("run-between");
    t.submit();
    t.step(0, 2, "light");
    const receiptAt = t.events.length;
    const next = t.propose(1, 2);
    const close = t.emit("verifier", "run_closed", null, 0, {
      outcome: "failed",
      reason: "x",
      steps: 1,
      receipt: computeReceipt(t.events.slice(0, receiptAt)),
      topology: null,
    });
    const r = auditTrace(t.events);
    expect(r.closedAt).toBe(close.seq);
    expect(r.after).toEqual([expect.objectContaining({ seq: next.seq, verdict: "tampering" })]);
    expect(r.ok).toBe(false);
  });
});
