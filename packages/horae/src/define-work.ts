/**
 * Works defined once, with their id, their param's type and their function: `defineWork('send-email', { schema,
 * run })`. `createHorae({ works })` registers them, and its `schedule()` then accepts only their ids, each with its
 * param's type.
 */
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { InvalidInputError } from '@horae/core';
import type { ParamValidator, TypedWorkFn, WorkOptions } from '@horae/storage';

/** A work as {@link defineWork} returns it: `P` is what `ctx.param` holds, `I` what `schedule()` accepts. */
export interface WorkDefinition<Id extends string = string, P = unknown, I = P> {
  /** The workId, stored with every task: renaming it orphans stored tasks. */
  readonly id: Id;
  /** The work function. */
  readonly run: TypedWorkFn<P>;
  /** Its validator (`validate`) and per-work defaults, as `WorkRegistry.register` takes them. */
  readonly options: Readonly<WorkOptions<P, I>>;
  /** Types only: the param `schedule()` accepts. Never set. */
  readonly '~input'?: I;
}

/** Any work definition, whatever its param types. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a list of works mixes param types; each keeps its own.
export type AnyWorkDefinition = WorkDefinition<string, any, any>;

/** What {@link defineWork} takes: the work function, the param's schema, and the per-work defaults. */
export type WorkDefinitionInput<P, I, S> = Omit<WorkOptions<P, I>, 'validate'> & {
  /** The work function; `ctx.param` has the schema's output type. */
  run: TypedWorkFn<P>;
  /**
   * Validates the param at `schedule()` (and again when a run is claimed): a Standard Schema (Zod, Valibot,
   * ArkType, …), a function that returns the param or throws, or an object with `parse()`. A refusal throws
   * `ParamValidationError` with the issues, and nothing is written. Without one, any JSON param is accepted.
   */
  schema?: S;
};

/**
 * Defines a work: its id, its function and its param's schema, from which the param's type is inferred.
 *
 * @param id - the workId (a non-empty string)
 * @param definition - `run`, the `schema` of its param, and defaults (`maxAttempts`, `retry`, `timeoutMs`,
 * `stallTimeoutMs`, `concurrency`)
 * @returns the definition, for `createHorae({ works: [...] })`
 * @throws InvalidInputError when the id is empty or `run` is not a function
 *
 * ### Examples
 * ```ts
 * import { z } from 'zod';
 * const sendEmail = defineWork('send-email', {
 *   schema: z.object({ to: z.email(), subject: z.string() }),
 *   run: async (ctx) => mailer.send(ctx.param.to, ctx.param.subject), // ctx.param: { to: string; subject: string }
 *   maxAttempts: 5,
 * });
 * ```
 */
export function defineWork<const Id extends string, S extends StandardSchemaV1>(
  id: Id,
  definition: WorkDefinitionInput<StandardSchemaV1.InferOutput<S>, StandardSchemaV1.InferInput<S>, S> & { schema: S },
): WorkDefinition<Id, StandardSchemaV1.InferOutput<S>, StandardSchemaV1.InferInput<S>>;
export function defineWork<const Id extends string, P = unknown>(id: Id, definition: WorkDefinitionInput<P, P, ParamValidator<P>>): WorkDefinition<Id, P, P>;
export function defineWork(id: string, definition: WorkDefinitionInput<unknown, unknown, ParamValidator>): WorkDefinition {
  if (typeof id !== 'string' || id === '') throw new InvalidInputError('defineWork: the id must be a non-empty string');
  if (definition === null || typeof definition !== 'object' || typeof definition.run !== 'function') {
    throw new InvalidInputError(`defineWork(${JSON.stringify(id.slice(0, 200))}): run must be a function`);
  }
  const { run, schema, ...defaults } = definition;
  return Object.freeze({ id, run, options: Object.freeze({ ...defaults, ...(schema === undefined ? {} : { validate: schema }) }) });
}
