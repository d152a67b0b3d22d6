// Free TCP ports on 127.0.0.1, shared by infra/kafka/net.mjs and infra/rabbitmq/net.mjs (plain ESM, Node >= 18).
// Binds 127.0.0.1:0 N times and reads the ports the kernel picked. All sockets are held open until every port is
// known, so the N ports differ; they are closed before returning, so there is a small window in which another
// process could take one (the server started on it then fails with "address in use", and start reports it).
import net from 'node:net';

export async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const server = net.createServer();
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, resolve);
      });
      servers.push(server);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}
