/**
 * Browser safety at the door of every public route (security/browser-policy.ts decides; this answers):
 * a `Host` the gateway does not answer to, a page of an unlisted origin, or a page's POST of a simple
 * content type gets 403 FORBIDDEN before anything of the request is used, and the connection is closed.
 * Checked synchronously, in the WebSocket upgrade handler as in every HTTP handler.
 */
import { errorBody } from '../core/errors';
import type { BrowserPolicy, BrowserRefusal } from '../security/browser-policy';
import { statusLine } from '../stream/http-out';
import type { HttpRequest, HttpResponse } from '../uws';

const WHY: Record<BrowserRefusal, string> = {
  host: 'the gateway does not answer to this Host (security.allowedHosts)',
  origin: 'pages of this Origin may not use the gateway (security.allowedOrigins)',
  'simple-write': 'a page may not POST a simple content type (text/plain, a form): use the bulk types',
};

/** Refuses the request (403) and returns true, or returns false when the browser rules let it through. */
export function refuseBrowser(res: HttpResponse, req: HttpRequest, policy: BrowserPolicy, method: string): boolean {
  const why = policy.checkRequest(
    method,
    req.getHeader('host'),
    req.getHeader('origin'),
    method === 'POST' ? req.getHeader('content-type') : undefined,
  );
  if (why === null) return false;
  res.cork(() => {
    res.writeStatus(statusLine(403)).writeHeader('content-type', 'application/json').writeHeader('vary', 'Origin');
    res.end(errorBody('FORBIDDEN', WHY[why]), true);
  });
  return true;
}

/**
 * An `OPTIONS` request on a public route: a CORS preflight, answered 204 with the CORS headers for a
 * listed origin, else 403 (then the browser does not send the request it asked about).
 */
export function answerPreflight(res: HttpResponse, req: HttpRequest, policy: BrowserPolicy): void {
  if (refuseBrowser(res, req, policy, 'OPTIONS')) return;
  const a = policy.preflight(
    req.getHeader('origin'),
    req.getHeader('access-control-request-method'),
    req.getHeader('access-control-request-headers'),
  );
  res.cork(() => {
    res.writeStatus(statusLine(a.status));
    for (const [k, v] of a.headers) res.writeHeader(k, v);
    if (a.status === 204) res.end();
    else
      res
        .writeHeader('content-type', 'application/json')
        .end(errorBody('FORBIDDEN', 'not a CORS preflight this gateway allows (origin, method or headers)'));
  });
}
