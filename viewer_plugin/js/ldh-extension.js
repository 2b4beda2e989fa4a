// Entry point listed in OHIF's window.config.extensions: never fails (see guard.js).
import { loadOrDegrade } from './guard.js';

export default await loadOrDegrade('extension', './extension.js', { id: 'ldh-assist-unavailable' });
