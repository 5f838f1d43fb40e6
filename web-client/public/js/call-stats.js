// Call quality from RTCPeerConnection.getStats(): what the stats panel shows and
// what the node gets in `report` messages. Pure functions of stats snapshots.

const CANDIDATE_TYPES = new Set(['host', 'srflx', 'prflx', 'relay']);
/** The node rejects durations outside 0 to one hour as implausible. */
const MAX_REPORTED_MS = 3_600_000;

/**
 * The numbers that matter from one getStats() report. Takes any iterable of stats
 * objects (an RTCStatsReport's values()), so that it can be fed recorded data.
 */
export function snapshotFromStats(stats, timestamp = Date.now()) {
  const byId = new Map();
  for (const entry of stats) byId.set(entry.id, entry);

  const snapshot = {
    timestamp,
    pair: null,
    localCandidate: null,
    remoteCandidate: null,
    inboundVideo: null,
    inboundAudio: null,
    bytesSent: 0,
  };
  let selectedPairId = null;
  for (const entry of byId.values()) {
    if (entry.type === 'transport' && entry.selectedCandidatePairId) selectedPairId = entry.selectedCandidatePairId;
  }
  for (const entry of byId.values()) {
    switch (entry.type) {
      case 'candidate-pair':
        // Without a transport entry, the nominated pair that works is the selected one.
        if (entry.id === selectedPairId || (!selectedPairId && entry.nominated && entry.state === 'succeeded')) {
          snapshot.pair = entry;
        }
        break;
      case 'inbound-rtp': {
        const slot = entry.kind === 'video' ? 'inboundVideo' : 'inboundAudio';
        // A renegotiated transceiver can leave an idle stream behind: keep the busy one.
        if (!snapshot[slot] || (entry.bytesReceived ?? 0) > (snapshot[slot].bytesReceived ?? 0)) {
          snapshot[slot] = entry;
        }
        break;
      }
      case 'outbound-rtp':
        snapshot.bytesSent += entry.bytesSent ?? 0;
        break;
      default:
    }
  }
  if (snapshot.pair) {
    snapshot.localCandidate = byId.get(snapshot.pair.localCandidateId) ?? null;
    snapshot.remoteCandidate = byId.get(snapshot.pair.remoteCandidateId) ?? null;
  }
  return snapshot;
}

export async function takeSnapshot(pc) {
  const report = await pc.getStats();
  return snapshotFromStats(report.values());
}

function kbps(bytesNow, bytesBefore, ms) {
  if (!(ms > 0) || bytesBefore === undefined || bytesNow < bytesBefore) return null;
  return Math.round(((bytesNow - bytesBefore) * 8) / ms);
}

/**
 * What a person reads in the stats panel, from the latest snapshot and the one
 * before it (rates and loss are over that interval).
 */
export function summarize(current, previous = null) {
  const ms = previous ? current.timestamp - previous.timestamp : 0;
  const received = (snap) => (snap?.inboundVideo?.bytesReceived ?? 0) + (snap?.inboundAudio?.bytesReceived ?? 0);
  const packets = (snap) => ({
    received: (snap?.inboundVideo?.packetsReceived ?? 0) + (snap?.inboundAudio?.packetsReceived ?? 0),
    lost: (snap?.inboundVideo?.packetsLost ?? 0) + (snap?.inboundAudio?.packetsLost ?? 0),
  });

  let lossPercent = null;
  if (previous) {
    const now = packets(current);
    const before = packets(previous);
    const lost = now.lost - before.lost;
    const expected = now.received - before.received + lost;
    if (expected > 0) lossPercent = Math.max(0, Math.round((lost / expected) * 1000) / 10);
  }

  const rtt = current.pair?.currentRoundTripTime;
  const video = current.inboundVideo;
  return {
    rttMs: typeof rtt === 'number' ? Math.round(rtt * 10000) / 10 : null,
    candidateType: current.localCandidate?.candidateType ?? null,
    remoteCandidateType: current.remoteCandidate?.candidateType ?? null,
    protocol: current.localCandidate?.protocol ?? null,
    receiveKbps: previous ? kbps(received(current), received(previous), ms) : null,
    sendKbps: previous ? kbps(current.bytesSent, previous.bytesSent, ms) : null,
    lossPercent,
    frameWidth: video?.frameWidth ?? null,
    frameHeight: video?.frameHeight ?? null,
    framesPerSecond: video?.framesPerSecond ?? null,
    framesDecoded: video?.framesDecoded ?? 0,
    audioPacketsReceived: current.inboundAudio?.packetsReceived ?? 0,
  };
}

/**
 * The `report` message body for one peer connection (see docs/protocol.md).
 * @param {{iceConnectedMs: number|null, everConnected: boolean, iceFailed: boolean, negotiationStartedAt: number|null}} link
 * @param {ReturnType<typeof summarize>|null} summary the latest stats, if any
 */
export function callReport(link, summary, { final = false } = {}) {
  const report = { final };
  if (typeof link.iceConnectedMs === 'number') {
    report.iceConnectedMs = Math.min(MAX_REPORTED_MS, Math.max(0, link.iceConnectedMs));
  }
  if (link.iceFailed) report.outcome = 'failed';
  else if (link.everConnected) report.outcome = 'connected';
  // A call that ends without ever connecting has failed, if it was tried at all.
  else if (final && link.negotiationStartedAt !== null) report.outcome = 'failed';
  if (summary && CANDIDATE_TYPES.has(summary.candidateType)) report.candidateType = summary.candidateType;
  if (summary && typeof summary.rttMs === 'number') {
    report.rttMs = Math.min(MAX_REPORTED_MS, Math.max(0, summary.rttMs));
  }
  return report;
}

/**
 * The connection quality a tile shows, from a summary: `good`, `fair`, `poor`,
 * or null before there is a round trip or loss figure to judge by. Loss hurts a
 * call sooner than delay does; thresholds are those at which speech and video
 * visibly suffer.
 */
export function qualityOf(summary) {
  if (!summary) return null;
  const { rttMs, lossPercent } = summary;
  if (rttMs === null && lossPercent === null) return null;
  const loss = lossPercent ?? 0;
  const rtt = rttMs ?? 0;
  if (loss >= 8 || rtt >= 600) return 'poor';
  if (loss >= 2 || rtt >= 300) return 'fair';
  return 'good';
}
