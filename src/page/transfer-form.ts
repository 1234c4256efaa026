import { byId } from './dom.js';
import { failureText } from './failure-text.js';
import { TransferView } from './transfer-view.js';

/**
 * Binds one side's form (`<side>-form`, `-start`, `-cancel`, `-progress`, `-figures`, `-status`): one
 * transfer at a time, run by `run` with the side's view and a signal its Cancel button aborts; a failure is
 * said in words.
 */
export function bindTransferForm(
  side: 'send' | 'recv',
  run: (view: TransferView, signal: AbortSignal) => Promise<void>,
  beforeRun: () => void = () => {},
): void {
  const form = byId<HTMLFormElement>(`${side}-form`);
  const start = byId<HTMLButtonElement>(`${side}-start`);
  const cancel = byId<HTMLButtonElement>(`${side}-cancel`);
  const view = new TransferView({
    progress: byId<HTMLProgressElement>(`${side}-progress`),
    figures: byId(`${side}-figures`),
    status: byId(`${side}-status`),
  });
  let running: AbortController | undefined;
  cancel.addEventListener('click', () => running?.abort(new DOMException('cancelled', 'AbortError')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (running) return;
    view.reset();
    beforeRun();
    const controller = new AbortController();
    running = controller;
    start.disabled = true;
    cancel.disabled = false;
    try {
      await run(view, controller.signal);
    } catch (error) {
      view.say(failureText(error, controller.signal));
    } finally {
      running = undefined;
      start.disabled = false;
      cancel.disabled = true;
    }
  });
}
