// When ICE cannot connect a peer: why, as far as this side can tell, and when to
// try again. Pure functions, so that the decisions can be tested without a browser.

/**
 * Waits before the ICE restarts that follow failures in a row: 8 s, 16 s, then
 * every 30 s, each spread by ±20 % so that the two sides (and many pages behind
 * one network) do not restart in step.
 */
export const ICE_RETRY = { delaysMs: [8000, 16000, 30000], jitter: 0.2 };

/**
 * Milliseconds to wait before restarting ICE after the `failures`-th failure in a
 * row (1 for the first). A connection that was up until this failure restarts at
 * once, since the network may have changed under it and a new path be there
 * already; the waits start with the next failure.
 * @param {number} failures
 * @param {{wasConnected?: boolean, random?: () => number, retry?: typeof ICE_RETRY}} [options]
 */
export function iceRetryDelay(failures, { wasConnected = false, random = Math.random, retry = ICE_RETRY } = {}) {
  const index = failures - (wasConnected ? 2 : 1);
  if (index < 0) return 0;
  const base = retry.delaysMs[Math.min(index, retry.delaysMs.length - 1)];
  return Math.round(base * (1 - retry.jitter + 2 * retry.jitter * random()));
}

/** Whether `iceServers` (RTCIceServer[]) names a TURN server. */
export function hasRelayServer(iceServers) {
  return (iceServers ?? []).some((server) => {
    const urls = Array.isArray(server?.urls) ? server.urls : [server?.urls];
    return urls.some((url) => typeof url === 'string' && /^turns?:/i.test(url));
  });
}

/** The candidate type (`host`, `srflx`, `prflx`, `relay`) of an RTCIceCandidate or its init, or null. */
export function candidateType(candidate) {
  if (!candidate) return null;
  if (typeof candidate.type === 'string' && candidate.type) return candidate.type;
  return /\btyp (\w+)/.exec(candidate.candidate ?? '')?.[1] ?? null;
}

/**
 * Why ICE failed:
 * - `no-relay`: no TURN server is configured, so when the networks on the way
 *   allow no direct path (a symmetric NAT, a firewall) nothing can get through;
 * - `relay-unreachable`: a TURN server is configured, but this side got no relay
 *   candidate from it (blocked, down, or refused the credentials);
 * - `unreachable`: relays were there, and still no pair of candidates worked.
 * @param {{iceServers: RTCIceServer[], localCandidateTypes: Iterable<string>}} what this side knows
 * @returns {'no-relay' | 'relay-unreachable' | 'unreachable'}
 */
export function iceFailureCause({ iceServers, localCandidateTypes }) {
  if (!hasRelayServer(iceServers)) return 'no-relay';
  if (![...localCandidateTypes].includes('relay')) return 'relay-unreachable';
  return 'unreachable';
}
