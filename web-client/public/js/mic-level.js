// How loud the person's own microphone is, from Web Audio: the lobby's meter and
// the highlight on their own tile.

// About 0.7 s at 48 kHz: long enough to hold a whole syllable, or a short beep,
// whenever it is sampled.
const WINDOW_SAMPLES = 32768;

export class MicLevel {
  #context = null;
  #analyser = null;
  #source = null;
  #buffer = null;
  #track = null;
  #resumeOnGesture = () => this.#context?.resume();

  /** Listens to `track` (or nothing, for null) from now on. */
  setTrack(track) {
    if (track === this.#track) return;
    this.#track = track;
    this.#source?.disconnect();
    this.#source = null;
    if (!track) return;
    // Firefox connects a microphone only to a context of its own sample rate,
    // which it may not report: the usual rates are tried in turn.
    const rates = [...new Set([track.getSettings().sampleRate, this.#context?.sampleRate, undefined, 48000, 44100])];
    for (const rate of rates) {
      try {
        if (!this.#context || (rate && rate !== this.#context.sampleRate)) this.#open(rate);
        this.#source = this.#context.createMediaStreamSource(new MediaStream([track]));
        this.#source.connect(this.#analyser);
        return;
      } catch {
        this.#source = null;
      }
    }
  }

  #open(sampleRate) {
    this.#context?.close();
    this.#context = new AudioContext(sampleRate ? { sampleRate } : {});
    this.#analyser = new AnalyserNode(this.#context, { fftSize: WINDOW_SAMPLES });
    this.#buffer = new Float32Array(WINDOW_SAMPLES);
    // Browsers may hold an AudioContext until the person interacts with the page.
    for (const type of ['pointerdown', 'keydown']) document.addEventListener(type, this.#resumeOnGesture, { capture: true });
  }

  /** The loudest sample of the last moment, 0 to 1; 0 while muted or without a microphone. */
  peak() {
    if (!this.#source || !this.#track?.enabled) return 0;
    this.#analyser.getFloatTimeDomainData(this.#buffer);
    let peak = 0;
    for (const sample of this.#buffer) peak = Math.max(peak, Math.abs(sample));
    return Math.min(1, peak);
  }

  close() {
    this.setTrack(null);
    for (const type of ['pointerdown', 'keydown']) document.removeEventListener(type, this.#resumeOnGesture, { capture: true });
    this.#context?.close();
    this.#context = null;
  }
}
