// The bench's yardstick for Workers (issue 16): a Worker that answers a request with its own body, the
// fastest a Worker moves bytes under workerd here. The Durable Object rows are held to 0.8x of it.
export default {
  fetch(request) {
    return new Response(request.body, { headers: { 'Content-Encoding': 'identity' }, encodeBody: 'manual' });
  },
};
