// The LDH Assist OHIF extension: one panel module, "ldh-review". The panel is a React component that OHIF
// renders; React itself is not reachable from a runtime module, so the component returns a hand-made React 18
// element (a <div> with a ref callback) and the review is plain DOM mounted into that div.

import { ReviewSession } from './review.js';

const REACT_ELEMENT = Symbol.for('react.element'); // React 18.3, as bundled in OHIF 3.13.2
const element = (type, { ref = null, ...props }) => ({ $$typeof: REACT_ELEMENT, type, key: null, ref, props, _owner: null, _store: {} });

let session = null;

function mount(container, managers) {
  if (!container) return;
  try {
    const study = new URLSearchParams(window.location.search).get('StudyInstanceUIDs');
    if (!session || session.study !== study?.split(',')[0]) {
      if (session) session.dispose();
      session = new ReviewSession(managers);
    }
    if (session.root.parentNode !== container) container.replaceChildren(session.root);
  } catch (err) { // never into React: an exception here would unmount the whole viewer
    console.error('LDH review panel', err);
    container.textContent = `LDH review is unavailable: ${err.message}`;
  }
}

export default {
  id: 'ldh-assist',
  getPanelModule(managers) {
    const component = () => element('div', { ref: (node) => mount(node, managers), style: { height: '100%', overflowY: 'auto' } });
    return [{ name: 'ldh-review', iconName: 'tab-linear', iconLabel: 'LDH', label: 'LDH review', component }];
  },
  onModeExit() {
    if (session) session.dispose();
    session = null;
  },
};
