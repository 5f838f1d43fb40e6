// Everything the app tells a person about what went wrong, in their words.

const JOIN_ERRORS = {
  'room-full': {
    title: 'This call is full',
    body: 'The room has as many people as it can take. Try again when someone leaves, or start a new call.',
  },
  'auth-required': {
    title: 'This call needs an invitation',
    body: 'Open the call from the invitation link you were sent.',
  },
  'auth-invalid': {
    title: 'Your invitation was not accepted',
    body: 'The link may be incomplete or broken. Ask the organizer to send it again.',
  },
  'auth-expired': {
    title: 'Your invitation has expired',
    body: 'Ask the organizer for a new link.',
  },
  'auth-wrong-room': {
    title: 'This invitation is for another call',
    body: 'Check that you opened the right link, or ask the organizer for a new one.',
  },
  'invalid-room': {
    title: 'That call link is not valid',
    body: 'Room names use letters, digits, dashes and underscores, up to 64 characters.',
  },
  'invalid-name': {
    title: 'Please choose another name',
    body: 'Names can be up to 64 characters long.',
  },
  'unsupported-protocol': {
    title: 'Please reload the page',
    body: 'The service was updated since this page was opened.',
  },
};

const SERVICE_TROUBLE = {
  title: 'The service is having trouble',
  body: 'Please try again in a moment.',
};

/** Title and explanation for a join that the node refused. */
export function joinErrorMessage(error) {
  return JOIN_ERRORS[error?.code] ?? SERVICE_TROUBLE;
}

const PROBLEM_TEXT = {
  denied: {
    both: 'Camera and microphone are blocked. Others will not see or hear you. Allow them in your browser\u2019s site settings, then reload.',
    video: 'Your camera is blocked. Allow it in your browser\u2019s site settings to be seen.',
    audio: 'Your microphone is blocked. Allow it in your browser\u2019s site settings to be heard.',
  },
  'no-device': {
    both: 'No camera or microphone was found. You can still join to watch and listen.',
    video: 'No camera was found. You can join with audio only.',
    audio: 'No microphone was found. Others will not hear you.',
  },
  'in-use': {
    both: 'Your camera and microphone are in use by another app. Close it and try again.',
    video: 'Your camera is in use by another app. Close it, then turn the camera on.',
    audio: 'Your microphone is in use by another app. Close it, then unmute.',
  },
  failed: {
    both: 'Your camera and microphone could not be started.',
    video: 'Your camera could not be started.',
    audio: 'Your microphone could not be started.',
  },
};

/** Advice about devices that could not be opened, or null when all is well. */
export function mediaProblemMessage({ audio, video }) {
  if (audio && video && audio.reason === video.reason) return PROBLEM_TEXT[audio.reason].both;
  const parts = [];
  if (video) parts.push(PROBLEM_TEXT[video.reason].video);
  if (audio) parts.push(PROBLEM_TEXT[audio.reason].audio);
  return parts.length ? parts.join(' ') : null;
}

function seconds(ms) {
  return Math.max(1, Math.round(ms / 1000));
}

const CALL_CONTINUES = 'Your call continues.';
const CHANGES_WAIT = 'Changes you make will reach the others when it\u2019s back.';

/**
 * The signaling status shown in the call's top bar, with a tone for its colour:
 * `ok`, `warn` or `bad`. Signaling and media are apart: while media flows with a
 * peer (`mediaFlowing`), a server that cannot be reached or refuses to pass
 * changes on (`refused`) is told as such, never as a lost connection; and never
 * as "Connected" while it refuses.
 */
export function signalingStatus({ state, retryInMs, refused = false, mediaFlowing = false }) {
  const call = mediaFlowing ? `${CALL_CONTINUES} ` : '';
  switch (state) {
    case 'connected':
      if (refused) return { label: `${call}The server isn\u2019t passing changes on right now. ${CHANGES_WAIT}`, tone: 'warn' };
      return { label: 'Connected', tone: 'ok' };
    case 'connecting':
      if (retryInMs !== undefined) {
        return { label: `Can\u2019t reach the server \u2014 retrying in ${seconds(retryInMs)} s`, tone: 'bad' };
      }
      return { label: 'Connecting\u2026', tone: 'warn' };
    case 'reconnecting':
      if (mediaFlowing) return { label: `${call}The server can\u2019t be reached right now. ${CHANGES_WAIT}`, tone: 'warn' };
      if (retryInMs !== undefined && retryInMs >= 1500) {
        return { label: `Connection lost \u2014 retrying in ${seconds(retryInMs)} s`, tone: 'bad' };
      }
      return { label: 'Reconnecting\u2026', tone: 'warn' };
    case 'closed':
      return { label: 'Disconnected', tone: 'bad' };
    default:
      return { label: 'Starting\u2026', tone: 'warn' };
  }
}

/** Why an own hand change did not reach the others; `raising` is what was tried. */
export function handFailedText(raising) {
  return `Your hand could not be ${raising ? 'raised' : 'lowered'}: try again in a moment`;
}

/** A peer may not see this side's latest microphone, camera or screen change yet. */
export function undeliveredStateText(name) {
  return `${name} may not see your latest microphone or camera change yet. It will reach them when the server is back.`;
}

/** A short notice when someone leaves. */
export function peerLeftText(name, reason) {
  return reason === 'left' ? `${name} left` : `${name} lost connection`;
}

/** What a tile says while its media is not flowing. */
export function connectionBadge(connectionState, everConnected) {
  switch (connectionState) {
    case 'new':
    case 'connecting':
      return everConnected ? 'Reconnecting\u2026' : 'Connecting\u2026';
    case 'disconnected':
      return 'Reconnecting\u2026';
    case 'failed':
      return 'Connection failed \u2014 retrying';
    default:
      return null;
  }
}

const CONNECTION_PROBLEMS = {
  'no-relay':
    'Your network blocks a direct connection, and no relay server is configured to get around it. Trying again now and then.',
  'relay-unreachable':
    'Your network blocks a direct connection, and the relay server could not be reached. Trying again now and then.',
  unreachable: 'No way through the networks between you was found, not even through the relay server. Trying again now and then.',
};

/**
 * Why a peer's media cannot connect, for their tile: a heading and an
 * explanation, or null while nothing is known to be wrong. `problem` is a
 * PeerLink's (see ice-retry.js).
 */
export function connectionProblem(problem, name) {
  const body = CONNECTION_PROBLEMS[problem];
  return body ? { title: `Can\u2019t connect to ${name}`, body } : null;
}

/** What the lobby says about who is already in the call, from the room's head count. */
export function headCountText(members) {
  if (!Number.isInteger(members) || members < 0) return '';
  if (members === 0) return 'No one else is here yet';
  return members === 1 ? '1 person in the call' : `${members} people in the call`;
}

const CHAT_ERRORS = {
  'chat-too-long': 'That message is too long to send.',
  'chat-empty': 'That message has nothing to send.',
  'invalid-chat': 'That message has characters that cannot be sent.',
  'broadcast-rate-limited': 'You are sending too fast: wait a moment and try again.',
  unavailable: 'The message could not be delivered: try again in a moment.',
};

/** Why an own chat message did not go out, in a person's words. */
export function chatErrorText(code) {
  return CHAT_ERRORS[code] ?? 'The message could not be sent.';
}

/** The names of the reactions, for screen readers and tooltips. */
export const REACTION_NAMES = Object.freeze({
  '👍': 'thumbs up',
  '👏': 'applause',
  '😂': 'laughing',
  '😮': 'surprised',
  '❤️': 'heart',
  '🎉': 'celebration',
});
