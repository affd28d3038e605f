// WebRTC plumbing: microphone, peer connection, and the one-shot offer/answer.
// No trickle ICE: the server answers a single offer that already holds every
// candidate, so we wait for gathering to finish before sending it.

const ICE_GATHERING_TIMEOUT_MS = 3000;
// After the answer is applied the data channel normally opens within a second;
// past this, something between browser and server blocks the media path.
export const CHANNEL_OPEN_TIMEOUT_MS = 15000;

export const MIC_CONSTRAINTS = {
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
};

export function openMicrophone() {
  if (!navigator.mediaDevices?.getUserMedia) {
    // Browsers hide getUserMedia on insecure origins (plain http other than localhost).
    const error = new Error("this page needs HTTPS (or localhost) to use the microphone");
    error.name = "InsecureContextError";
    return Promise.reject(error);
  }
  return navigator.mediaDevices.getUserMedia(MIC_CONSTRAINTS);
}

export function stopMicrophone(stream) {
  stream?.getTracks().forEach((track) => track.stop());
}

/** An audio input by deviceId (e.g. a USB line-in from the phone system); `audio` adds constraints. */
export function openAudioInput(deviceId, audio = {}) {
  if (!navigator.mediaDevices?.getUserMedia) return openMicrophone(); // rejects with the same explanation
  return navigator.mediaDevices.getUserMedia({ audio: { ...audio, deviceId: { exact: deviceId } } });
}

/** The audio inputs [{deviceId, label}]; labels are empty until the page has been allowed a microphone. */
export async function listAudioInputs() {
  if (!navigator.mediaDevices?.enumerateDevices) return [];
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices
    .filter((device) => device.kind === "audioinput" && device.deviceId)
    .map(({ deviceId, label }) => ({ deviceId, label }));
}

/**
 * The RTCPeerConnection configuration for a session: the STUN/TURN servers the server
 * handed out with it (session.ice_servers: [{urls, username?, credential?}]).
 * The page's URL may force relay: `?ice=relay` gathers TURN relay candidates only
 * (iceTransportPolicy "relay"), to check that calls get through the TURN server.
 */
export function iceConfiguration(session, search = location.search) {
  const relay = new URLSearchParams(search).get("ice") === "relay";
  return { iceServers: session?.ice_servers ?? [], iceTransportPolicy: relay ? "relay" : "all" };
}

/** Whether the media goes (or may go) through a TURN server: relay forced, or turn:/turns: URLs given. */
export function usesRelay(config) {
  if (config.iceTransportPolicy === "relay") return true;
  const urls = config.iceServers.flatMap((server) => [server.urls].flat());
  return urls.some((url) => /^turns?:/.test(url));
}

export const RELAY_ERROR = "Could not reach the media relay (TURN): check its address and credentials";

/** Why the audio link failed, for a person: the TURN server when one is in play, else `fallback`. */
export function linkFailureMessage(config, fallback) {
  return usesRelay(config) ? RELAY_ERROR : fallback;
}

/**
 * Builds a peer connection that sends the mic and carries the "events" data channel.
 * config: iceConfiguration(session). handlers: {onOpen, onMessage(data), onLost, onTrack(event)};
 * onLost(failed) runs when the channel closes or the connection fails (failed = true) or drops.
 */
export function createPeer(stream, config, handlers) {
  const pc = new RTCPeerConnection(config);
  for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
  return wirePeer(pc, handlers);
}

/**
 * A peer connection that sends several audio tracks, one transceiver each (the
 * assist overlay's agent and customer), plus the "events" data channel.
 * sources: [{track, stream}]; the server tells the tracks apart by track id
 * (the offer's a=msid lines), so label them in the offer body.
 * config and handlers: as createPeer's.
 */
export function createMultiTrackPeer(sources, config, handlers) {
  const pc = new RTCPeerConnection(config);
  for (const { track, stream } of sources) {
    pc.addTransceiver(track, { direction: "sendonly", streams: stream ? [stream] : [] });
  }
  return wirePeer(pc, handlers);
}

function wirePeer(pc, handlers) {
  // Created before the offer so the offer includes the SCTP (data) section.
  const channel = pc.createDataChannel("events", { ordered: true });
  channel.onopen = () => handlers.onOpen?.();
  channel.onclose = () => handlers.onLost?.();
  channel.onmessage = (message) => handlers.onMessage?.(message.data);

  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed" || pc.connectionState === "disconnected") {
      handlers.onLost?.(pc.connectionState === "failed");
    }
  };
  pc.ontrack = (event) => handlers.onTrack?.(event);
  return { pc, channel };
}

/**
 * Offer, wait for ICE, let `exchange(offer)` deliver it to the server, apply the answer.
 * With relay forced, an offer without a relay candidate cannot connect: the TURN
 * server refused or never answered, so say so now rather than after ICE times out.
 */
export async function negotiate(pc, exchange) {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await iceGatheringComplete(pc);
  const forcedRelay = pc.getConfiguration().iceTransportPolicy === "relay";
  if (forcedRelay && !/ typ relay/.test(pc.localDescription.sdp)) throw new RelayError();
  const answer = await exchange(pc.localDescription);
  await pc.setRemoteDescription(answer);
}

export class RelayError extends Error {
  constructor() {
    super(RELAY_ERROR);
    this.name = "RelayError";
  }
}

function iceGatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", onChange);
      resolve();
    };
    const onChange = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    // Some browsers stall gathering on unusable interfaces; the host candidates
    // found in the first moments are all a LAN/localhost server needs.
    const timer = setTimeout(done, ICE_GATHERING_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", onChange);
  });
}

export function closePeer(peer) {
  if (!peer) return;
  // Detach handlers first so our own close is not reported as a lost connection.
  peer.channel.onopen = peer.channel.onclose = peer.channel.onmessage = null;
  peer.pc.onconnectionstatechange = peer.pc.ontrack = null;
  try {
    peer.channel.close();
  } catch {
    /* already closed */
  }
  peer.pc.close();
}
