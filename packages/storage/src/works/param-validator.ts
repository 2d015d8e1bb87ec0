/**
 * A work's param validator, in any of the forms people bring: a Standard Schema (Zod, Valibot, ArkType and every
 * library that implements https://standardschema.dev), a function that returns the param or throws, or an object
 * with `parse()`. One place turns what each reports into a {@link ParamValidationError} with the issues.
 */
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { InvalidInputError, quoteInput } from '@horae/core';

/**
 * Checks a param and returns it (possibly transformed): a Standard Schema (`schema['~standard'].validate`), a
 * function that throws on bad input, or an object with a `parse` method. `Input` is what `schedule()` accepts,
 * `Output` what the work's `ctx.param` holds.
 */
export type ParamValidator<Output = unknown, Input = Output> =
  | StandardSchemaV1<Input, Output>
  | ((param: unknown) => Output)
  | { parse(param: unknown): Output };

/** One problem a validator found: its message and where in the param (property names and indexes; empty: the root). */
export interface ParamIssue {
  /** What is wrong, as the validator said it. */
  readonly message: string;
  /** The path to the offending value. */
  readonly path: readonly (string | number)[];
}

/** The most issues quoted in the error's message (all of them are in `issues`). */
const MAX_QUOTED_ISSUES = 5;

/**
 * A param refused by its work's validator. Nothing was written. `issues` lists what the validator found (a thrown
 * error is one issue at the root, and the `cause`).
 */
export class ParamValidationError extends InvalidInputError {
  /**
   * @param workId - the work whose validator refused the param
   * @param issues - what it found
   * @param options - the thrown error, when the validator threw
   */
  constructor(
    readonly workId: string,
    readonly issues: readonly ParamIssue[],
    options?: { cause?: unknown },
  ) {
    const quoted = issues.slice(0, MAX_QUOTED_ISSUES).map((issue) => (issue.path.length === 0 ? issue.message : `${issue.path.join('.')}: ${issue.message}`));
    const more = issues.length > MAX_QUOTED_ISSUES ? `; and ${issues.length - MAX_QUOTED_ISSUES} more` : '';
    super(`the param of ${quoteInput(workId)} failed its validation: ${quoted.join('; ')}${more}`, options);
  }
}

/** True when `value` implements Standard Schema v1. */
export function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return false;
  const standard = (value as Partial<StandardSchemaV1>)['~standard'];
  return typeof standard === 'object' && standard !== null && standard.version === 1 && typeof standard.validate === 'function';
}

/** True when `value` is one of the validator forms {@link ParamValidator} names. */
export function isParamValidator(value: unknown): value is ParamValidator {
  return isStandardSchema(value) || typeof value === 'function' || (typeof value === 'object' && value !== null && typeof (value as { parse?: unknown }).parse === 'function');
}

/**
 * Runs a validator on a param.
 *
 * Rules: a Standard Schema is asked first (ArkType's types are functions too, and return their errors instead of
 * throwing): its issues refuse the param; a schema that validates asynchronously is refused, since `schedule()`
 * validates before it writes, synchronously. A function or `parse()` refuses by throwing; a function that returns
 * nothing accepts the param as given.
 *
 * @param workId - the work, for the error
 * @param validate - the validator
 * @param param - the param to check
 * @returns the param to store (as the validator returned it)
 * @throws ParamValidationError when the validator refuses the param
 * @throws InvalidInputError when a Standard Schema validates asynchronously
 */
export function runParamValidator(workId: string, validate: ParamValidator, param: unknown): unknown {
  if (isStandardSchema(validate)) {
    const result = validate['~standard'].validate(param);
    if (result instanceof Promise) {
      // Keep an unobserved rejection from surfacing as an unhandled one.
      result.catch(() => undefined);
      throw new InvalidInputError(`the schema of ${quoteInput(workId)} validates asynchronously; params are validated synchronously at schedule(): use a schema without async refinements`);
    }
    if (result.issues !== undefined) throw new ParamValidationError(workId, result.issues.map(toParamIssue));
    return result.value;
  }
  try {
    const value = typeof validate === 'function' ? validate(param) : validate.parse(param);
    return value === undefined ? param : value;
  } catch (error) {
    throw new ParamValidationError(workId, [{ message: error instanceof Error ? error.message : String(error), path: [] }], { cause: error });
  }
}

function toParamIssue(issue: StandardSchemaV1.Issue): ParamIssue {
  const path = (issue.path ?? []).map((segment) => {
    const key = typeof segment === 'object' && segment !== null ? segment.key : segment;
    return typeof key === 'number' ? key : String(key);
  });
  return { message: String(issue.message), path };
}

/** The Standard Schema v1 interface (https://standardschema.dev), re-exported for typing your own validators. */
export type { StandardSchemaV1 } from '@standard-schema/spec';
