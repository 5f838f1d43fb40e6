// The safety code of a peer connection: a short number derived from both sides'
// DTLS certificate fingerprints. Media is encrypted end to end with keys bound to
// those certificates, but the fingerprints travel through the signaling service,
// which could swap them and sit in the middle. Both people read their code aloud:
// if the codes match, each side holds the other's real certificate.

const FINGERPRINT = /^a=fingerprint:(\S+) ([0-9A-Fa-f:]+)\s*$/m;
const DIGIT_GROUPS = 3;

/** `sha-256 AB:CD:...` from an SDP, normalised, or null when it has none. */
export function fingerprintOf(sdp) {
  const match = FINGERPRINT.exec(sdp ?? '');
  return match ? `${match[1].toLowerCase()} ${match[2].toUpperCase()}` : null;
}

/**
 * The code for two fingerprints, the same whichever side computes it: they are
 * sorted before hashing. Twelve digits in groups of four (about 40 bits), short
 * enough to read out, long enough that a swapped certificate cannot be ground
 * to match in the seconds of a call set-up.
 * @returns {Promise<string>} e.g. "0472 9913 5820"
 */
export async function safetyCode(fingerprintA, fingerprintB) {
  const input = new TextEncoder().encode([fingerprintA, fingerprintB].sort().join('\n'));
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', input));
  const groups = [];
  for (let i = 0; i < DIGIT_GROUPS; i += 1) {
    // 5 bytes per group, reduced mod 10^4: the bias of 2^40 mod 10^4 is negligible.
    let value = 0;
    for (const byte of digest.subarray(i * 5, i * 5 + 5)) value = (value * 256 + byte) % 10_000;
    groups.push(String(value).padStart(4, '0'));
  }
  return groups.join(' ');
}

/** The code of a connection once both descriptions are set, else null. */
export async function safetyCodeOf(pc) {
  const local = fingerprintOf(pc.localDescription?.sdp);
  const remote = fingerprintOf(pc.remoteDescription?.sdp);
  if (!local || !remote) return null;
  return safetyCode(local, remote);
}
