// The assist overlay's audio: the setup form (which source, which input, which file)
// and a call's audio opened as labelled tracks. Sources: the microphone (agent), the
// microphone plus a second input such as a USB line-in from the phone system
// (customer), or a stereo call recording played in real time (left channel = agent,
// right = customer; a mono file is the customer).

import { Superseded, byRole, byTestId, h } from "./page.js";
import { listAudioInputs, openAudioInput, openMicrophone, stopMicrophone } from "./signalling.js";

const MONITOR_GAIN = 0.2; // the recording, heard locally, quietly

/** A mistake the agent can put right (no file chosen, a file that is not audio): its message says how. */
export class UserError extends Error {}

const el = {
  source: byTestId("assist-source"),
  file: byTestId("assist-file"),
  fileRow: byRole("file-row"),
  monitor: byRole("monitor"),
  deviceRow: byRole("device-row"),
  device: byRole("device"),
  refreshDevices: byRole("refresh-devices"),
};

// ---- the setup form ------------------------------------------------------------------

/** "mic" | "mic+device" | "file" */
export const sourceKind = () => el.source.value;

/**
 * Wires the setup form. `changed()` runs when the chosen source changes (choosing a file
 * chooses the recording source), `monitorChanged(on)` when "hear it" is switched.
 */
export function initSetup({ changed, monitorChanged }) {
  const sourceChanged = () => {
    showSourceFields();
    changed();
  };
  el.source.addEventListener("change", sourceChanged);
  el.refreshDevices.addEventListener("click", () => refreshDevices());
  navigator.mediaDevices?.addEventListener?.("devicechange", () => {
    if (el.source.value === "mic+device") refreshDevices();
  });
  el.monitor.addEventListener("change", () => monitorChanged(el.monitor.checked));
  el.file.addEventListener("change", () => {
    if (el.file.files?.length && el.source.value !== "file") {
      el.source.value = "file";
      sourceChanged();
    }
  });
  showSourceFields();
}

/** The form stays as it is while a call runs. */
export function lockSetup(locked) {
  for (const field of [el.source, el.file, el.device, el.refreshDevices]) field.disabled = locked;
}

/** What to do before pressing Start, for the chosen source. */
export function idleHint() {
  switch (el.source.value) {
    case "file":
      return "Choose a stereo call recording (left = agent, right = customer), then press Start.";
    case "mic+device":
      return "Pick the input that carries the customer (e.g. the phone system's line-in), then press Start.";
    default:
      return "Press Start: your microphone is streamed as the agent.";
  }
}

function showSourceFields() {
  const source = el.source.value;
  el.fileRow.hidden = source !== "file";
  el.deviceRow.hidden = source !== "mic+device";
  if (source === "mic+device") refreshDevices();
}

let devicesAsked = false;

/** Fills the customer-input list; device names need a microphone permission, so ask once. */
async function refreshDevices() {
  try {
    let inputs = await listAudioInputs();
    if (inputs.length && inputs.every((d) => !d.label) && !devicesAsked) {
      devicesAsked = true;
      stopMicrophone(await openMicrophone()); // only to be allowed to read the names
      inputs = await listAudioInputs();
    }
    const previous = el.device.value;
    el.device.replaceChildren(
      ...inputs.map((d, i) => h("option", { value: d.deviceId, text: d.label || `Audio input ${i + 1}` })),
    );
    if (!inputs.length) {
      el.device.append(h("option", { value: "", text: "No audio input found" }));
    } else if (inputs.some((d) => d.deviceId === previous)) {
      el.device.value = previous;
    } else {
      // The default microphone is the agent's: offer a named input, the newest (often the USB one) first.
      const named = inputs.filter((d) => !["default", "communications"].includes(d.deviceId));
      if (named.length) el.device.value = named[named.length - 1].deviceId;
    }
  } catch (error) {
    console.warn("Earshot assist: cannot list audio inputs", error);
    el.device.replaceChildren(h("option", { value: "", text: "Audio inputs unavailable" }));
  }
}

// ---- one call's audio ----------------------------------------------------------------------

/**
 * The audio of one call: the inputs it opened and, for a recording, the Web Audio graph
 * that plays it. close() releases everything, also while open() still waits: open()
 * then throws Superseded.
 */
export class CallAudio {
  streams = []; // MediaStreams to stop (microphone, line-in)
  player = null; // {ctx, buffer, input, source, monitor} for a recording
  closed = false;

  /** -> [{track, stream, speaker}] for the chosen source; `say(text)` tells the agent what it waits for. */
  async open(say) {
    const source = el.source.value;
    if (source === "file") return this.openRecording(say);

    say("Asking for the microphone…");
    const mic = this.keep(await openMicrophone());
    const sources = [{ track: mic.getAudioTracks()[0], stream: mic, speaker: "agent" }];
    if (source === "mic+device") {
      const deviceId = el.device.value;
      if (!deviceId) throw new UserError("Choose the customer's audio input first.");
      // A line-in carries the customer's voice as is: the browser's voice processing would only harm it.
      const line = this.keep(
        await openAudioInput(deviceId, { echoCancellation: false, noiseSuppression: false, autoGainControl: false }),
      );
      sources.push({ track: line.getAudioTracks()[0], stream: line, speaker: "customer" });
    }
    return sources;
  }

  keep(stream) {
    if (this.closed) {
      stopMicrophone(stream);
      throw new Superseded();
    }
    this.streams.push(stream);
    return stream;
  }

  /**
   * Decodes the chosen recording and wires it: channel 0 -> agent track, channel 1 ->
   * customer track (a mono file -> the customer). play() starts it once the call is live.
   */
  async openRecording(say) {
    const file = el.file.files?.[0];
    if (!file) throw new UserError("Choose a call recording first.");
    const AudioContextClass = window.AudioContext ?? window.webkitAudioContext;
    if (!AudioContextClass) throw new UserError("This browser cannot play recordings into a call (no Web Audio).");
    // Created in the click's turn so autoplay rules let it run.
    const ctx = new AudioContextClass();
    this.player = { ctx, buffer: null, input: null, source: null, monitor: null };
    ctx.resume().catch(() => {});

    say(`Reading ${file.name}…`);
    let buffer;
    try {
      buffer = await ctx.decodeAudioData(await file.arrayBuffer());
    } catch {
      throw new UserError(`Cannot decode ${file.name}: choose a WAV, MP3, OGG or similar audio file.`);
    }
    if (this.closed) throw new Superseded();
    this.player.buffer = buffer;

    const track = (speaker) => {
      const node = ctx.createMediaStreamDestination();
      node.channelCount = 1;
      node.channelCountMode = "explicit";
      return { node, source: { track: node.stream.getAudioTracks()[0], stream: node.stream, speaker } };
    };
    const input = ctx.createGain(); // the source connects here when it plays
    this.player.input = input;
    const sources = [];
    if (buffer.numberOfChannels >= 2) {
      const splitter = ctx.createChannelSplitter(buffer.numberOfChannels);
      input.connect(splitter);
      const agent = track("agent");
      const customer = track("customer");
      splitter.connect(agent.node, 0);
      splitter.connect(customer.node, 1);
      sources.push(agent.source, customer.source);
    } else {
      const customer = track("customer");
      input.connect(customer.node);
      sources.push(customer.source);
    }
    const monitor = ctx.createGain();
    monitor.gain.value = el.monitor.checked ? MONITOR_GAIN : 0;
    input.connect(monitor);
    monitor.connect(ctx.destination);
    this.player.monitor = monitor;
    return sources;
  }

  /** Whether this call plays a recording (rather than live inputs). */
  get recording() {
    return this.player !== null;
  }

  /** The recording's length in seconds. */
  get duration() {
    return this.player?.buffer?.duration ?? 0;
  }

  /** Starts the recording (once); `ended()` (the latest given) runs when it has played to the end. */
  play(ended) {
    const player = this.player;
    if (player?.source) {
      player.source.onended = ended; // a reconnect: it plays on, and the new connection hears its end
      return;
    }
    if (!player?.buffer) return;
    const source = player.ctx.createBufferSource();
    source.buffer = player.buffer;
    source.connect(player.input);
    source.onended = ended;
    player.source = source;
    player.ctx.resume().catch(() => {});
    source.start();
  }

  setMonitor(on) {
    if (this.player?.monitor) this.player.monitor.gain.value = on ? MONITOR_GAIN : 0;
  }

  close() {
    this.closed = true;
    for (const stream of this.streams) stopMicrophone(stream);
    this.streams = [];
    if (this.player) {
      const { ctx, source } = this.player;
      if (source) {
        source.onended = null;
        try {
          source.stop();
        } catch {
          /* never started */
        }
      }
      ctx.close().catch(() => {});
      this.player = null;
    }
  }
}
