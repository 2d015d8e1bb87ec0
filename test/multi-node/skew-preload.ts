/**
 * The clock-skewing preload of the multi-node and chaos tests, in one place: clock-skew.test.ts and test/chaos fork
 * workers with it.
 */

/**
 * The preload (`node --import`): shifts this process's wall clock by HORAE_TEST_CLOCK_SKEW_MS. `Date.now()` and
 * `new Date()` without arguments are skewed; a Date built from a value, timers and `performance` are not. The real
 * `Date.now` stays reachable under `Symbol.for('horae.test.realDateNow')`, for the worker's run log only.
 */
export const SKEW_PRELOAD = String.raw`// Skews Date for a worker of test/multi-node or test/chaos (see skew-preload.ts).
const skew = Number(process.env.HORAE_TEST_CLOCK_SKEW_MS);
if (!Number.isFinite(skew)) throw new Error('HORAE_TEST_CLOCK_SKEW_MS must be a number');
const RealDate = globalThis.Date;
const realNow = RealDate.now.bind(RealDate);
const now = () => realNow() + skew;
globalThis[Symbol.for('horae.test.realDateNow')] = realNow;
globalThis.Date = new Proxy(RealDate, {
  construct(target, args, newTarget) {
    return Reflect.construct(target, args.length === 0 ? [now()] : args, newTarget);
  },
  apply() {
    return new RealDate(now()).toString();
  },
  get(target, key, receiver) {
    return key === 'now' ? now : Reflect.get(target, key, receiver);
  },
});
`;
