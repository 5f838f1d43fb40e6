// The person's own camera, microphone and screen: what the call sends.
//
// Dispatches `change` whenever the tracks to send or their state change; readers
// then look at `audioTrack`, `videoTrack` and `state`.

/** Why a device could not be used, in words the UI can map to advice. */
export class MediaAccessError extends Error {
  /**
   * @param {'denied'|'no-device'|'in-use'|'failed'} reason
   * @param {'audio'|'video'|'screen'} kind
   */
  constructor(reason, kind, cause) {
    super(`${kind}: ${reason}${cause?.message ? ` (${cause.message})` : ''}`);
    this.name = 'MediaAccessError';
    this.reason = reason;
    this.kind = kind;
    this.cause = cause;
  }
}

function classify(err, kind) {
  const reasons = {
    NotAllowedError: 'denied',
    SecurityError: 'denied',
    NotFoundError: 'no-device',
    OverconstrainedError: 'no-device',
    NotReadableError: 'in-use',
    AbortError: 'in-use',
  };
  return new MediaAccessError(reasons[err?.name] ?? 'failed', kind, err);
}

export class LocalMedia extends EventTarget {
  #mediaDevices;
  #videoSize;
  #micTrack = null;
  #cameraTrack = null;
  #screenTrack = null;
  #micOn = true;
  #cameraOn = true;
  #micDeviceId = null;
  #cameraDeviceId = null;
  #problems = { audio: null, video: null };
  #started = false;
  #processing = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

  /**
   * @param {{videoSize: {width: number, height: number}, mediaDevices?: MediaDevices}} options
   */
  constructor({ videoSize, mediaDevices = navigator.mediaDevices }) {
    super();
    this.#videoSize = videoSize;
    this.#mediaDevices = mediaDevices;
  }

  /** The microphone track, sent even while muted (disabled tracks send silence). */
  get audioTrack() {
    return this.#micTrack;
  }

  /** The camera, while it is on; it keeps going while the screen is shared. */
  get videoTrack() {
    return this.#cameraOn ? this.#cameraTrack : null;
  }

  /** The shared screen, sent as a second video track, or null. */
  get screenTrack() {
    return this.#screenTrack;
  }

  /** What others should be told, and what the controls show. */
  get state() {
    return {
      audio: Boolean(this.#micTrack) && this.#micOn,
      video: Boolean(this.videoTrack),
      screen: Boolean(this.#screenTrack),
      camera: Boolean(this.#cameraTrack) && this.#cameraOn,
    };
  }

  /** Whether start() has finished: until then there is nothing to show yet. */
  get started() {
    return this.#started;
  }

  /** The last failure per kind (`audio`, `video`), or null: shown as advice. */
  get problems() {
    return { ...this.#problems };
  }

  #audioConstraints() {
    return {
      ...this.#processing,
      ...(this.#micDeviceId ? { deviceId: { exact: this.#micDeviceId } } : {}),
    };
  }

  #videoConstraints() {
    return {
      width: { ideal: this.#videoSize.width },
      height: { ideal: this.#videoSize.height },
      frameRate: { ideal: 30, max: 30 },
      ...(this.#cameraDeviceId ? { deviceId: { exact: this.#cameraDeviceId } } : {}),
    };
  }

  /**
   * Opens the microphone and camera. Never throws: what failed is in `problems`,
   * so that a person without a camera can still join and listen.
   */
  async start() {
    try {
      const stream = await this.#mediaDevices.getUserMedia({
        audio: this.#audioConstraints(),
        video: this.#videoConstraints(),
      });
      this.#setMic(stream.getAudioTracks()[0] ?? null);
      this.#setCamera(stream.getVideoTracks()[0] ?? null);
      this.#problems = { audio: null, video: null };
    } catch (err) {
      const problem = classify(err, 'video');
      if (problem.reason === 'denied') {
        // One prompt answered "no" for both; asking again per kind would not help.
        this.#problems = { audio: classify(err, 'audio'), video: problem };
      } else {
        // A missing or busy device of one kind must not cost the other one.
        await Promise.all([this.#openMic(), this.#openCamera()]);
      }
    }
    // Shown as off rather than broken; turning it on asks again.
    if (!this.#cameraTrack) this.#cameraOn = false;
    this.#started = true;
    this.#changed();
  }

  async #openMic() {
    try {
      const stream = await this.#mediaDevices.getUserMedia({ audio: this.#audioConstraints() });
      this.#setMic(stream.getAudioTracks()[0]);
      this.#problems.audio = null;
      return true;
    } catch (err) {
      this.#problems.audio = classify(err, 'audio');
      return false;
    }
  }

  async #openCamera() {
    try {
      const stream = await this.#mediaDevices.getUserMedia({ video: this.#videoConstraints() });
      this.#setCamera(stream.getVideoTracks()[0]);
      this.#problems.video = null;
      return true;
    } catch (err) {
      this.#problems.video = classify(err, 'video');
      return false;
    }
  }

  #setMic(track) {
    this.#micTrack?.stop();
    this.#micTrack = track;
    if (track) {
      track.enabled = this.#micOn;
      this.#micDeviceId = track.getSettings().deviceId ?? this.#micDeviceId;
    }
  }

  #setCamera(track) {
    this.#cameraTrack?.stop();
    this.#cameraTrack = track;
    if (track) {
      track.contentHint = 'motion';
      this.#cameraDeviceId = track.getSettings().deviceId ?? this.#cameraDeviceId;
    }
  }

  #changed() {
    this.dispatchEvent(new Event('change'));
  }

  /**
   * Mutes or unmutes. Unmuting without a microphone (it was blocked or missing)
   * asks for one again; resolves false when there still is none.
   */
  async setMicEnabled(on) {
    this.#micOn = on;
    let opened = true;
    if (on && !this.#micTrack) opened = await this.#openMic();
    if (this.#micTrack) this.#micTrack.enabled = on;
    this.#changed();
    return opened;
  }

  /**
   * Turns the camera on or off. Off releases the device (its light goes out); on
   * opens it again. Resolves false when the camera could not be opened.
   */
  async setCameraEnabled(on) {
    this.#cameraOn = on;
    let opened = true;
    if (on && !this.#cameraTrack) {
      opened = await this.#openCamera();
      if (!opened) this.#cameraOn = false;
    } else if (!on && this.#cameraTrack) {
      this.#setCamera(null);
    }
    this.#changed();
    return opened;
  }

  /** Cameras and microphones, with the ones in use. Labels need permission first. */
  async devices() {
    const all = await this.#mediaDevices.enumerateDevices();
    const pick = (kind) =>
      all
        .filter((device) => device.kind === kind && device.deviceId)
        .map((device, index) => ({ id: device.deviceId, label: device.label || `${kind === 'videoinput' ? 'Camera' : 'Microphone'} ${index + 1}` }));
    return {
      cameras: pick('videoinput'),
      microphones: pick('audioinput'),
      cameraId: this.#cameraDeviceId,
      microphoneId: this.#micDeviceId,
    };
  }

  /** Switches to another camera; the old one is released once the new one works. */
  async useCamera(deviceId) {
    const previous = this.#cameraDeviceId;
    this.#cameraDeviceId = deviceId;
    if (!this.#cameraOn) return true;
    const opened = await this.#openCamera();
    if (!opened) this.#cameraDeviceId = previous;
    this.#changed();
    return opened;
  }

  /** Echo cancellation, noise suppression and auto gain: all on unless switched off. */
  get audioProcessing() {
    return { ...this.#processing };
  }

  /**
   * Switches audio processing steps on or off, e.g. `{noiseSuppression: false}`
   * for music. The microphone is opened again with them, since browsers apply
   * processing changes to a live track unreliably; the old track is released
   * first, since Chromium gives a second track of the same microphone the first
   * one's processing.
   */
  async setAudioProcessing(changes) {
    const previous = this.#processing;
    this.#processing = { ...previous, ...changes };
    if (!this.#micTrack) return true;
    this.#setMic(null);
    const opened = await this.#openMic();
    if (!opened) {
      this.#processing = previous;
      await this.#openMic();
    }
    this.#changed();
    return opened;
  }

  /** Switches to another microphone, keeping the mute state. */
  async useMicrophone(deviceId) {
    const previous = this.#micDeviceId;
    this.#micDeviceId = deviceId;
    const opened = await this.#openMic();
    if (!opened) this.#micDeviceId = previous;
    this.#changed();
    return opened;
  }

  /**
   * Asks the person for a screen or window to share and sends it beside the
   * camera, so that the others still see the presenter's face. Resolves false
   * when they cancelled the picker.
   */
  async startScreenShare() {
    if (this.#screenTrack) return true;
    let stream;
    try {
      stream = await this.#mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
    } catch (err) {
      if (err?.name === 'NotAllowedError' || err?.name === 'AbortError') return false;
      throw classify(err, 'screen');
    }
    const track = stream.getVideoTracks()[0];
    // Text on a shared screen must stay sharp; a lower frame rate is fine.
    track.contentHint = 'detail';
    // The browser's own "Stop sharing" bar ends the track.
    track.addEventListener('ended', () => this.stopScreenShare());
    this.#screenTrack = track;
    this.#changed();
    return true;
  }

  stopScreenShare() {
    if (!this.#screenTrack) return;
    this.#screenTrack.stop();
    this.#screenTrack = null;
    this.#changed();
  }

  /** Releases every device. */
  stop() {
    this.#screenTrack?.stop();
    this.#screenTrack = null;
    this.#setMic(null);
    this.#setCamera(null);
    this.#changed();
  }
}
