/** The most of a refusal's body read for its reason: servers answer one short line. */
const MAX_REASON_BYTES = 2048;

/** The server's one-line reason for a refusal (`[ERROR] ...` from edgepipe and piping-server), bounded. */
export async function reasonOf(response: Response): Promise<string> {
  let text = '';
  try {
    const reader = response.body?.getReader();
    const decoder = new TextDecoder();
    while (reader && text.length < MAX_REASON_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    await reader?.cancel().catch(() => {});
  } catch {
    // The reason is a courtesy: a body that fails to arrive leaves the status alone to speak.
  }
  const line = text.split('\n').find((l) => l.trim() !== '') ?? '';
  return (
    line
      .replace(/^\[ERROR\]\s*/, '')
      .trim()
      .slice(0, 300) ||
    response.statusText ||
    'no reason given'
  );
}
