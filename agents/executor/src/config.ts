// The executor's sizes and limits, each documented where it is declared. It reads no
// environment variable of its own: those every agent reads are in @trias/runtime (env.ts).
import { DEFAULT_CLOCK_SKEW_MS } from "@trias/runtime";

/**
 * Deliveries of one assignment before the server gives up on it. A reviewed step's
 * assignment comes back each time its review window is looked at again (retryInMs), so this
 * bounds how often a step waiting for reviewers or a human is revisited, not how often it runs.
 * @default 100
 */
export const ASSIGNMENT_MAX_DELIVER = 100;

/**
 * Entries kept in each in-memory cache (open step cases, steps done, runs known to be free of
 * quarantine). A miss costs a read of the effects bucket, never a wrong answer.
 * @default 5_000
 */
export const CACHE_ENTRIES = 5_000;

/**
 * A message issued later than this after the executor started is known to be new to it
 * (first sight): the slack is the clock difference tolerated between agents.
 * @default DEFAULT_CLOCK_SKEW_MS
 */
export const FIRST_SIGHT_SLACK_MS = DEFAULT_CLOCK_SKEW_MS;

/**
 * The furthest ahead a waiting step's next look is scheduled: a human window of days is
 * revisited daily.
 * @default 86_400_000 ms (one day)
 */
export const MAX_RETRY_DELAY_MS = 24 * 3600_000;

/**
 * How long after a review window closes its step is looked at again, so that the look
 * falls after the close and not a timer tick before it.
 * @default 50 ms
 */
export const WINDOW_CLOSE_SLACK_MS = 50;
