/** What a client's get window (src/flow/get-window.ts) needs to know of that client's output. */
export interface OutputMeter {
  /** Bytes written for the client that it has not taken yet (our frames, uWS's buffer). */
  heldBytes(): number;
}

/** Memory held for clients that uWS holds, as the output side last saw it (the global budget counts it). */
export interface TransportTally {
  transport: number;
}

/** Counts HTTP responses in progress (the connection gate). */
export interface ResponseTally {
  http: number;
}
