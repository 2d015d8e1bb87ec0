/**
 * A small model of the MongoDB query filters, aggregation expressions and stages that the adapter's builders use,
 * so that the unit tests can run a transition over a document without a server. No MongoDB server exists where
 * these tests run; this model is the closest check of the update pipelines that is possible there.
 *
 * It follows the MongoDB manual for the operators below, including what a missing field does (a missing value is
 * `undefined` here), and throws on any operator it does not model, so that a builder using a new operator fails the
 * tests instead of passing unchecked. It checks the adapter's logic — the order of stages, which field a stage
 * reads, the defaults for documents of older versions — never the server's own behaviour: that is what the
 * conformance suite checks against a real server (`MONGODB_URI`).
 */
import type { Document } from 'mongodb';

/** A stored document, as the model holds it. */
export type Doc = Record<string, unknown>;

interface Scope {
  root: Doc;
  now: Date;
  vars: Record<string, unknown>;
}

const isPlainObject = (value: unknown): value is Doc =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);

/** The BSON type order MongoDB compares and sorts by (missing lowest, as the manual's comparison order). */
function typeRank(value: unknown): number {
  if (value === undefined) return 0;
  if (value === null) return 1;
  if (typeof value === 'number' || typeof value === 'bigint') return 2;
  if (typeof value === 'string') return 3;
  if (Array.isArray(value)) return 5;
  if (value instanceof Date) return 9;
  if (typeof value === 'boolean') return 8;
  if (typeof value === 'object') return 4;
  throw new Error(`the model cannot compare a ${typeof value}`);
}

/** Compares two values as MongoDB does across and within BSON types. */
export function compare(a: unknown, b: unknown): number {
  const ra = typeRank(a);
  const rb = typeRank(b);
  if (ra !== rb) return ra - rb;
  if (typeof a === 'number' && typeof b === 'number') return a === b ? 0 : a < b ? -1 : 1;
  if (typeof a === 'string' && typeof b === 'string') return a === b ? 0 : a < b ? -1 : 1;
  if (a instanceof Date && b instanceof Date) return a.getTime() - b.getTime();
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  if (ra <= 1) return 0;
  // Objects and arrays: only equality matters to the builders.
  const ja = JSON.stringify(a);
  const jb = JSON.stringify(b);
  return ja === jb ? 0 : ja < jb ? -1 : 1;
}

/** MongoDB's truthiness in expressions: false, null, missing and 0 are false; everything else is true. */
const truthy = (value: unknown): boolean => !(value === false || value === null || value === undefined || value === 0);

const isNullish = (value: unknown): boolean => value === null || value === undefined;

/** Reads a dotted path; through an array of documents it yields the array of their values, as a field path does. */
function readPath(value: unknown, parts: readonly string[]): unknown {
  if (parts.length === 0) return value;
  if (Array.isArray(value)) return value.map((item) => readPath(item, parts)).filter((item) => item !== undefined);
  if (!isPlainObject(value)) return undefined;
  return readPath(value[parts[0]!], parts.slice(1));
}

function args(value: unknown, op: string): unknown[] {
  if (!Array.isArray(value)) throw new Error(`${op} takes an array in the builders`);
  return value;
}

function asDocument(value: unknown): Document {
  if (!isPlainObject(value)) throw new Error('expected an object');
  return value;
}

/**
 * Evaluates an aggregation expression.
 *
 * @param expr - the expression
 * @param root - the document it reads (`$field`)
 * @param now - the value of `$$NOW`
 */
export function evaluate(expr: unknown, root: Doc, now: Date): unknown {
  return evaluateIn(expr, { root, now, vars: {} });
}

function evaluateIn(expr: unknown, scope: Scope): unknown {
  if (typeof expr === 'string') {
    if (expr.startsWith('$$')) {
      const [name, ...path] = expr.slice(2).split('.');
      if (name === 'NOW') return scope.now;
      if (name === 'ROOT') return readPath(scope.root, path);
      if (name !== undefined && name in scope.vars) return readPath(scope.vars[name], path);
      throw new Error(`unknown variable ${expr}`);
    }
    if (expr.startsWith('$')) return readPath(scope.root, expr.slice(1).split('.'));
    return expr;
  }
  if (Array.isArray(expr)) return expr.map((item) => evaluateIn(item, scope));
  if (!isPlainObject(expr)) return expr;
  const keys = Object.keys(expr);
  if (keys.length === 1 && keys[0]!.startsWith('$')) return operator(keys[0]!, expr[keys[0]!], scope);
  const out: Doc = {};
  for (const key of keys) {
    const value = evaluateIn(expr[key], scope);
    if (value !== undefined) out[key] = value;
  }
  return out;
}

function operator(op: string, raw: unknown, scope: Scope): unknown {
  const ev = (value: unknown): unknown => evaluateIn(value, scope);
  switch (op) {
    case '$literal':
      return structuredClone(raw);
    case '$cond': {
      const parts: unknown[] = Array.isArray(raw) ? (raw as unknown[]) : [asDocument(raw).if, asDocument(raw).then, asDocument(raw).else];
      const [test, then, otherwise] = parts;
      return truthy(ev(test)) ? ev(then) : ev(otherwise);
    }
    case '$eq':
    case '$ne':
    case '$gt':
    case '$gte':
    case '$lt':
    case '$lte': {
      const [a, b] = args(raw, op).map(ev);
      const c = compare(a, b);
      return { $eq: c === 0, $ne: c !== 0, $gt: c > 0, $gte: c >= 0, $lt: c < 0, $lte: c <= 0 }[op];
    }
    case '$and':
      return args(raw, op).every((item) => truthy(ev(item)));
    case '$in': {
      const [needle, hay] = args(raw, op).map(ev);
      if (!Array.isArray(hay)) throw new Error('$in needs an array');
      return hay.some((item) => compare(item, needle) === 0);
    }
    case '$add': {
      const values = args(raw, op).map(ev);
      if (values.some(isNullish)) return null;
      const date = values.find((v): v is Date => v instanceof Date);
      const sum = values.reduce<number>((total, v) => total + (v instanceof Date ? v.getTime() : (v as number)), 0);
      return date === undefined ? sum : new Date(sum);
    }
    case '$subtract': {
      const [a, b] = args(raw, op).map(ev);
      if (isNullish(a) || isNullish(b)) return null;
      if (a instanceof Date && b instanceof Date) return a.getTime() - b.getTime();
      if (a instanceof Date) return new Date(a.getTime() - (b as number));
      return (a as number) - (b as number);
    }
    case '$multiply': {
      const values = args(raw, op).map(ev);
      if (values.some(isNullish)) return null;
      return values.reduce<number>((product, v) => product * (v as number), 1);
    }
    case '$max': {
      const values = args(raw, op).map(ev).filter((v) => !isNullish(v));
      return values.length === 0 ? null : values.reduce((best, v) => (compare(v, best) > 0 ? v : best));
    }
    case '$ifNull': {
      const values = args(raw, op);
      for (const value of values.slice(0, -1)) {
        const v = ev(value);
        if (!isNullish(v)) return v;
      }
      return ev(values.at(-1));
    }
    case '$mergeObjects': {
      const out: Doc = {};
      for (const value of args(raw, op).map(ev)) {
        if (isNullish(value)) continue;
        Object.assign(out, asDocument(value));
      }
      return out;
    }
    case '$concat': {
      const values = args(raw, op).map(ev);
      if (values.some(isNullish)) return null;
      if (!values.every((v) => typeof v === 'string')) throw new Error('$concat takes strings only');
      return values.join('');
    }
    case '$toString': {
      const v = ev(raw);
      if (isNullish(v)) return null;
      if (typeof v === 'number' && Number.isInteger(v)) return String(v);
      if (typeof v === 'string') return v;
      throw new Error(`the model's $toString takes integers and strings, got ${String(v)}`);
    }
    case '$toInt':
    case '$toLong': {
      const v = ev(raw);
      if (isNullish(v)) return null;
      if (v instanceof Date) {
        if (op === '$toInt') throw new Error('$toInt of a date is an error');
        return v.getTime();
      }
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${op} of ${String(v)} is an error`);
      return Math.trunc(v);
    }
    case '$map': {
      const spec = asDocument(raw);
      const input = ev(spec.input);
      if (isNullish(input)) return null;
      if (!Array.isArray(input)) throw new Error('$map needs an array');
      const as = typeof spec.as === 'string' ? spec.as : 'this';
      return input.map((item: unknown) => evaluateIn(spec.in, { ...scope, vars: { ...scope.vars, [as]: item } }));
    }
    case '$concatArrays': {
      const values = args(raw, op).map(ev);
      if (values.some(isNullish)) return null;
      if (!values.every(Array.isArray)) throw new Error('$concatArrays takes arrays');
      return (values as unknown[][]).flat(1);
    }
    case '$slice': {
      const [array, n] = args(raw, op).map(ev);
      if (isNullish(array)) return null;
      if (!Array.isArray(array) || typeof n !== 'number') throw new Error('$slice takes an array and a count');
      return n >= 0 ? array.slice(0, n) : array.slice(n);
    }
    case '$arrayElemAt': {
      const [array, i] = args(raw, op).map(ev);
      if (isNullish(array)) return null;
      if (!Array.isArray(array) || typeof i !== 'number') throw new Error('$arrayElemAt takes an array and an index');
      return i >= 0 ? array[i] : array[array.length + i];
    }
    default:
      throw new Error(`the model does not know the operator ${op}`);
  }
}

/**
 * Runs an update pipeline (`$set` stages only, as the builders write) over a copy of `doc`.
 *
 * @param doc - the stored document
 * @param pipeline - the update pipeline
 * @param now - the value of `$$NOW` for the whole pipeline (one value per write, as on the server)
 */
export function applyPipeline(doc: Doc, pipeline: readonly Document[], now: Date): Doc {
  let current = structuredClone(doc);
  for (const stage of pipeline) {
    const keys = Object.keys(stage);
    if (keys.length !== 1 || (keys[0] !== '$set' && keys[0] !== '$addFields')) throw new Error(`the model runs $set stages only, got ${keys.join(', ')}`);
    const next = structuredClone(current);
    // Every expression of one stage reads the stage's input, not the fields the same stage sets.
    for (const [field, expr] of Object.entries(asDocument(stage[keys[0]]))) {
      if (field.includes('.')) throw new Error(`a pipeline $set takes no dotted path: ${field}`);
      const value = evaluate(expr, current, now);
      if (value === undefined) delete next[field];
      else next[field] = value;
    }
    current = next;
  }
  return current;
}

function matchesCondition(value: unknown, condition: unknown): boolean {
  const isOperators = isPlainObject(condition) && Object.keys(condition).length > 0 && Object.keys(condition).every((key) => key.startsWith('$'));
  if (!isOperators) {
    // Equality: null also matches a missing field; an array matches when it or one of its elements is equal.
    if (condition === null) return isNullish(value);
    if (Array.isArray(value) && !Array.isArray(condition)) return value.some((item) => compare(item, condition) === 0);
    return compare(value, condition) === 0;
  }
  return Object.entries(condition).every(([op, operand]) => {
    switch (op) {
      case '$exists':
        return (value !== undefined) === Boolean(operand);
      case '$eq':
        return matchesCondition(value, operand);
      case '$ne':
        return !matchesCondition(value, operand);
      case '$in':
        return (operand as unknown[]).some((item) => matchesCondition(value, item));
      case '$type': {
        const types: Record<string, (v: unknown) => boolean> = {
          date: (v) => v instanceof Date,
          object: isPlainObject,
          string: (v) => typeof v === 'string',
          bool: (v) => typeof v === 'boolean',
        };
        const test = types[operand as string];
        if (test === undefined) throw new Error(`the model does not know $type ${String(operand)}`);
        return test(value);
      }
      case '$gt':
      case '$gte':
      case '$lt':
      case '$lte': {
        // Query comparisons only match values of the same BSON type (type bracketing).
        if (typeRank(value) !== typeRank(operand)) return false;
        const c = compare(value, operand);
        return { $gt: c > 0, $gte: c >= 0, $lt: c < 0, $lte: c <= 0 }[op];
      }
      default:
        throw new Error(`the model does not know the query operator ${op}`);
    }
  });
}

/**
 * Whether `doc` matches a query filter, with `$$NOW` in its `$expr` set to `now`.
 *
 * @param doc - the stored document
 * @param filter - the filter a builder returned
 * @param now - the value of `$$NOW`
 */
export function matches(doc: Doc, filter: Document, now: Date): boolean {
  return Object.entries(filter).every(([key, condition]) => {
    if (key === '$expr') return truthy(evaluate(condition, doc, now));
    if (key === '$or') return (condition as Document[]).some((branch) => matches(doc, branch, now));
    if (key === '$and') return (condition as Document[]).every((branch) => matches(doc, branch, now));
    if (key.startsWith('$')) throw new Error(`the model does not know the filter operator ${key}`);
    return matchesCondition(readPath(doc, key.split('.')), condition);
  });
}

/** Orders documents by a sort spec (`1` ascending, `-1` descending); a missing field sorts as null, lowest. */
export function sortBy(docs: readonly Doc[], spec: Document): Doc[] {
  const fields = Object.entries(spec) as [string, 1 | -1][];
  const key = (doc: Doc, field: string): unknown => readPath(doc, field.split('.')) ?? null;
  return [...docs].sort((a, b) => {
    for (const [field, direction] of fields) {
      const c = compare(key(a, field), key(b, field));
      if (c !== 0) return c * direction;
    }
    return 0;
  });
}

/**
 * What `findOneAndUpdate(filter, pipeline, { sort })` does to a collection: updates the first matching document in
 * sort order and returns it as it is after the update, or null.
 *
 * @param collection - the documents, changed in place
 */
export function findOneAndUpdate(collection: Doc[], filter: Document, pipeline: readonly Document[], now: Date, sort?: Document): Doc | null {
  const candidates = collection.filter((doc) => matches(doc, filter, now));
  const [first] = sort === undefined ? candidates : sortBy(candidates, sort);
  if (first === undefined) return null;
  const updated = applyPipeline(first, pipeline, now);
  collection[collection.indexOf(first)] = updated;
  return structuredClone(updated);
}

/**
 * Runs an aggregation of `$match`, `$set`, `$sort`, `$limit` and `$project` stages over a collection.
 *
 * @param collection - the documents (not changed)
 */
export function aggregate(collection: readonly Doc[], pipeline: readonly Document[], now: Date): Doc[] {
  let docs = collection.map((doc) => structuredClone(doc));
  for (const stage of pipeline) {
    const [name, spec] = Object.entries(stage)[0] as [string, unknown];
    if (name === '$match') docs = docs.filter((doc) => matches(doc, asDocument(spec), now));
    else if (name === '$set' || name === '$addFields') docs = docs.map((doc) => applyPipeline(doc, [{ $set: spec }], now));
    else if (name === '$sort') docs = sortBy(docs, asDocument(spec));
    else if (name === '$limit') docs = docs.slice(0, spec as number);
    else if (name === '$project') {
      docs = docs.map((doc) => {
        const out: Doc = { _id: doc._id };
        for (const [field, value] of Object.entries(asDocument(spec))) {
          const v = value === 1 ? readPath(doc, field.split('.')) : evaluate(value, doc, now);
          if (v !== undefined) out[field] = v;
        }
        return out;
      });
    } else throw new Error(`the model does not know the stage ${name}`);
  }
  return docs;
}
