/**
 * Request framing a strict proxy could read differently from uWS (request smuggling): uWS takes the first
 * of two `Content-Length` headers and treats any `Transfer-Encoding` as chunked. Such a request is refused
 * with 400 before its body is used, and its connection is closed, since where the next request begins is
 * unknown. (`Content-Length` with `Transfer-Encoding` never gets here: uWS closes the connection itself.)
 *
 * The close must not let uWS parse what follows: a response that ends inside the handler lets uWS go on
 * with the next request in the same read, and once it has ended the connection can no longer be closed
 * from JS. So the 400 stays unfinished (its JSON body goes out as one chunk, without the final chunk):
 * a pipelined request in the same read makes uWS close the connection without calling any handler, and
 * otherwise the connection is closed on the next turn.
 */
import { errorBody } from '../core/errors';
import { statusLine } from '../stream/http-out';
import type { HttpRequest, HttpResponse } from '../uws';

/** What is wrong with the request's body framing, or null. */
export function framingProblem(req: HttpRequest): string | null {
  // Only requests that announce a body pay for the walk over their headers.
  if (req.getHeader('content-length') === '' && req.getHeader('transfer-encoding') === '') return null;
  let lengths = 0;
  let codings = 0;
  let coding = '';
  req.forEach((k, v) => {
    if (k === 'content-length') lengths++;
    else if (k === 'transfer-encoding') {
      codings++;
      coding = v;
    }
  });
  if (lengths > 1) return 'more than one Content-Length header';
  if (codings > 1) return 'more than one Transfer-Encoding header';
  if (codings === 1 && coding.trim().toLowerCase() !== 'chunked') return 'Transfer-Encoding must be exactly chunked';
  return null;
}

/** Refuses the request (400 BAD_REQUEST) and closes its connection; true if it did. */
export function refuseFraming(res: HttpResponse, req: HttpRequest): boolean {
  const problem = framingProblem(req);
  if (problem === null) return false;
  let gone = false;
  res.onAborted(() => {
    gone = true;
  });
  // The head goes out now but the response stays pending: should another request follow in this same
  // read (a smuggling attempt), uWS closes the connection rather than run it. Once the read is over the
  // answer is completed with a Content-Length and `Connection: close`, so uWS closes after sending it.
  res.cork(() => {
    res.writeStatus(statusLine(400)).writeHeader('content-type', 'application/json');
  });
  const body = errorBody('BAD_REQUEST', `${problem}: the request's length is ambiguous`);
  setImmediate(() => {
    if (!gone) res.cork(() => res.end(body, true));
  });
  return true;
}

/**
 * uWS 20.30 never ends the body of a request with `Content-Length: 0` whose head came in more than one
 * read (it emits the empty last chunk only when the head was parsed in one go): such a request would wait
 * forever. Handlers that read a body treat one declared empty as complete at once (and ignore the empty
 * last chunk uWS may still deliver).
 */
export function declaredEmpty(req: HttpRequest): boolean {
  const cl = req.getHeader('content-length');
  return cl !== '' && /^0+$/.test(cl) && req.getHeader('transfer-encoding') === '';
}

export const NO_BYTES = new ArrayBuffer(0);
