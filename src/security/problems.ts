/**
 * What the credential modules say about a bad setting. Validation collects every problem before it answers
 * (an operator fixes a file once, not once per field), so problems are data, not thrown errors; a
 * constructor handed options that do not compile throws one AuthConfigError carrying all of them.
 * `path` names the field as the configuration file spells it (`security.auth.apiKeys[2].hash`).
 */
export interface AuthProblem {
  path: string;
  message: string;
}

export class AuthConfigError extends Error {
  readonly problems: AuthProblem[];
  constructor(problems: AuthProblem[]) {
    super('invalid authentication settings:\n  - ' + problems.map((p) => `${p.path}: ${p.message}`).join('\n  - '));
    this.problems = problems;
  }
}

/** A plain object (a JSON `{}`), not an array and not null. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One problem per field of `obj` not in `known`. */
export function unknownFields(obj: Record<string, unknown>, known: ReadonlySet<string>, path: string): AuthProblem[] {
  const out: AuthProblem[] = [];
  for (const k of Object.keys(obj))
    if (!known.has(k)) out.push({ path: `${path}.${k}`, message: `unknown field (known: ${[...known].join(', ')})` });
  return out;
}
