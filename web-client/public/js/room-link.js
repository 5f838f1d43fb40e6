// Rooms in URLs: `/r/<room>` or `?room=<room>`, invite links, and fresh room names.

const ROOM_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

const ADJECTIVES = [
  'amber', 'bold', 'brisk', 'calm', 'clever', 'cosmic', 'crisp', 'daring', 'eager', 'fancy',
  'gentle', 'golden', 'happy', 'jolly', 'keen', 'lively', 'lucky', 'mellow', 'merry', 'nimble',
  'noble', 'polar', 'quick', 'quiet', 'rapid', 'royal', 'sunny', 'swift', 'tidy', 'vivid',
  'warm', 'witty',
];

const NOUNS = [
  'badger', 'beacon', 'canyon', 'comet', 'coral', 'falcon', 'fjord', 'forest', 'harbor', 'heron',
  'island', 'lagoon', 'lantern', 'maple', 'meadow', 'meteor', 'orchid', 'otter', 'panda', 'pebble',
  'pine', 'prairie', 'raven', 'river', 'robin', 'saturn', 'spruce', 'summit', 'tiger', 'tundra',
  'valley', 'walrus',
];

export function isValidRoom(room) {
  return typeof room === 'string' && ROOM_PATTERN.test(room);
}

/**
 * The room a location points at: `{room}` when valid, `{invalid}` holding what was
 * asked for when not, `{}` when none was asked for.
 */
export function roomFromLocation(location) {
  const params = new URLSearchParams(location.search);
  let asked = params.get('room');
  const match = location.pathname.match(/^\/r\/([^/]*)\/?$/);
  if (match) asked = safeDecode(match[1]);
  if (asked === null || asked === '') return {};
  return isValidRoom(asked) ? { room: asked } : { invalid: asked };
}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The link to share: the room's path on this origin. */
export function inviteUrl(origin, room) {
  return `${origin}/r/${encodeURIComponent(room)}`;
}

/** A readable room name that is hard to guess, e.g. `swift-otter-4821-k3`. */
export function randomRoomName(getRandomValues = (array) => crypto.getRandomValues(array)) {
  const words = getRandomValues(new Uint32Array(4));
  const adjective = ADJECTIVES[words[0] % ADJECTIVES.length];
  const noun = NOUNS[words[1] % NOUNS.length];
  const number = String(words[2] % 10000).padStart(4, '0');
  const suffix = (words[3] % 36 ** 2).toString(36).padStart(2, '0');
  return `${adjective}-${noun}-${number}-${suffix}`;
}

/**
 * Options read from the page's query string:
 * - `token=...`: the join token of a personal invitation, for nodes that require one
 * - `relay=1`: only TURN relay candidates (`iceTransportPolicy: 'relay'`)
 * - `video=WIDTHxHEIGHT`: the camera size to ask for (default 1280x720)
 */
export function callOptionsFromQuery(search) {
  const params = new URLSearchParams(search);
  const size = /^(\d{2,4})x(\d{2,4})$/.exec(params.get('video') ?? '');
  return {
    token: params.get('token') || null,
    relayOnly: params.get('relay') === '1',
    videoSize: size ? { width: Number(size[1]), height: Number(size[2]) } : { width: 1280, height: 720 },
  };
}
