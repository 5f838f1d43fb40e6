// Camera and microphone selection, shared by the lobby and the in-call settings.

import { h } from './dom.js';

let nextPickerId = 1;

const PROCESSING = [
  ['echoCancellation', 'Echo cancellation'],
  ['noiseSuppression', 'Noise suppression'],
  ['autoGainControl', 'Automatic volume'],
];

/**
 * @param {import('../local-media.js').LocalMedia} media
 * @param {{onFailure: (kind: 'audio'|'video') => void}} handlers
 */
export function createDevicePicker(media, { onFailure }) {
  const id = nextPickerId++;
  const camera = h('select', { id: `camera-select-${id}`, class: 'select' });
  const microphone = h('select', { id: `microphone-select-${id}`, class: 'select' });

  const processing = PROCESSING.map(([key, label]) => {
    const box = h('input', { type: 'checkbox', id: `${key}-${id}`, 'data-processing': key, checked: media.audioProcessing[key] });
    box.addEventListener('change', async () => {
      if (!(await media.setAudioProcessing({ [key]: box.checked }))) onFailure('audio');
      box.checked = media.audioProcessing[key];
    });
    return { key, box, element: h('div', { class: 'check' }, box, h('label', { for: box.id }, label)) };
  });

  const element = h(
    'div',
    { class: 'device-picker' },
    h('div', { class: 'field' }, h('label', { for: camera.id }, 'Camera'), camera),
    h('div', { class: 'field' }, h('label', { for: microphone.id }, 'Microphone'), microphone),
    h(
      'fieldset',
      { class: 'field audio-processing' },
      h('legend', { class: 'field-label' }, 'Sound'),
      processing.map((item) => item.element),
    ),
  );

  function fill(select, devices, selectedId, noneLabel) {
    select.replaceChildren(
      ...(devices.length
        ? devices.map((device) => h('option', { value: device.id, selected: device.id === selectedId }, device.label))
        : [h('option', { value: '' }, noneLabel)]),
    );
    select.disabled = devices.length === 0;
  }

  async function refresh() {
    const devices = await media.devices();
    fill(camera, devices.cameras, devices.cameraId, 'No camera found');
    fill(microphone, devices.microphones, devices.microphoneId, 'No microphone found');
    for (const { key, box } of processing) box.checked = media.audioProcessing[key];
  }

  camera.addEventListener('change', async () => {
    if (!(await media.useCamera(camera.value))) onFailure('video');
    await refresh();
  });
  microphone.addEventListener('change', async () => {
    if (!(await media.useMicrophone(microphone.value))) onFailure('audio');
    await refresh();
  });
  // Plugging in a headset or a webcam updates the lists.
  navigator.mediaDevices.addEventListener('devicechange', refresh);

  return {
    element,
    refresh,
    dispose() {
      navigator.mediaDevices.removeEventListener('devicechange', refresh);
    },
  };
}
