// Video Caller: the page people open. Lobby first, then the call, then a way back.

import { callStateOf, signalingUrlFor } from './lib/signaling-client.js';
import { Call } from './js/call.js';
import { LocalMedia } from './js/local-media.js';
import { callOptionsFromQuery, inviteUrl, roomFromLocation } from './js/room-link.js';
import { CallView } from './js/ui/call-view.js';
import { Lobby } from './js/ui/lobby.js';
import { joinErrorMessage } from './js/ui/messages.js';
import { createNoticeScreen } from './js/ui/notice-screen.js';

const root = document.getElementById('app');
const options = callOptionsFromQuery(location.search);
const media = new LocalMedia({ videoSize: options.videoSize });
const current = { screen: 'lobby', call: null };

function show(screen, element) {
  current.screen = screen;
  root.replaceChildren(element);
}

async function runLobby() {
  const { room, invalid } = roomFromLocation(location);
  const lobby = new Lobby({ room: room ?? null, invalidRoom: invalid ?? null, media, origin: location.origin, token: options.token });
  show('lobby', lobby.element);
  lobby.focus();
  const mediaReady = media.start();

  for (;;) {
    const request = await lobby.nextJoinRequest();
    lobby.setJoining(true);
    // Joining with the devices already open spares everyone a renegotiation.
    await mediaReady;
    const call = new Call({
      signalingUrl: signalingUrlFor(location),
      room: request.room,
      name: request.name,
      token: options.token,
      media,
      relayOnly: options.relayOnly,
    });
    current.call = call;
    const showSignaling = ({ detail }) => lobby.showSignaling(detail);
    call.addEventListener('signaling', showSignaling);
    lobby.nextCancel().then(() => call.leave());
    try {
      await call.join();
    } catch (err) {
      current.call = null;
      lobby.setJoining(false);
      // `closed`: the person cancelled; nothing to explain.
      if (err?.code !== 'closed') lobby.showError(joinErrorMessage(err));
      continue;
    } finally {
      call.removeEventListener('signaling', showSignaling);
    }
    if (lobby.startsNewCall) {
      // The address bar now holds the link to this call, ready to share or reload.
      history.pushState(null, '', `${inviteUrl('', request.room)}${location.search}`);
    }
    lobby.dispose();
    runCall(call, { room: request.room, name: call.displayName });
    return;
  }
}

function runCall(call, { room, name }) {
  const view = new CallView({ call, media, room, name, origin: location.origin, onLeave: () => call.leave() });
  show('call', view.element);
  view.focus();

  const leaveOnUnload = () => call.leaveNow();
  window.addEventListener('pagehide', leaveOnUnload);
  // A network change may have left the socket on a network that is gone.
  const stopWatchingNetwork = call.client.watchNetwork(window, navigator.connection);

  call.addEventListener(
    'ended',
    ({ detail }) => {
      window.removeEventListener('pagehide', leaveOnUnload);
      stopWatchingNetwork();
      view.dispose();
      media.stop();
      showEnded(room, detail);
    },
    { once: true },
  );
}

function showEnded(room, { reason, error }) {
  const rejoin = () => location.assign(`${inviteUrl('', room)}${location.search}`);
  const startNew = () => location.assign(`/${location.search}`);
  const lost = reason !== 'left';
  const message = lost ? joinErrorMessage(error) : null;
  const screen = createNoticeScreen({
    title: lost ? `You were disconnected: ${message.title.toLowerCase()}` : 'You left the call',
    body: lost ? message.body : 'Rejoin whenever you like; the link stays the same.',
    tone: lost ? 'warn' : 'info',
    actions: [
      { label: 'Rejoin', onClick: rejoin, primary: true },
      { label: 'Start a new call', onClick: startNew },
    ],
  });
  show('ended', screen.element);
  screen.focus();
}

/**
 * A small diagnostics handle for support and automated browser tests: the peer
 * connections, to read getStats() from, and the state of the call.
 */
window.__vc = {
  media,
  get call() {
    return current.call;
  },
  peerConnections() {
    return [...(current.call?.links.values() ?? [])].map((link) => ({ peerId: link.peerId, name: link.name, pc: link.pc, link }));
  },
  state() {
    const call = current.call;
    return {
      screen: current.screen,
      signaling: call?.client.state ?? null,
      node: call?.client.node ?? null,
      peerId: call?.peerId ?? null,
      room: call?.client.room ?? null,
      media: media.state,
      chat: call?.chat.length ?? 0,
      hand: call?.handRaised ?? false,
      peers: [...(call?.links.values() ?? [])].map((link) => ({
        id: link.peerId,
        name: link.name,
        connectionState: link.connectionState,
        remote: link.remoteState,
        negotiations: link.negotiations,
        collisions: link.collisions,
        polite: link.polite,
        iceConnectedMs: link.iceConnectedMs,
        safetyCode: call.safetyCode(link.peerId),
        hand: call.handOf(link.peerId),
        // The peer's call state as the node told it (members, peer-state).
        callState: callStateOf(call.client.members.find((member) => member.id === link.peerId)),
      })),
    };
  },
};

runLobby();
