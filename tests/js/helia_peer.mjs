// A Helia node (bitswap over js-libp2p TCP/Noise/Yamux on 127.0.0.1) driven by JSON lines,
// for the bitswap interop tests and bench/bitswap.py.
//
// usage: node tests/js/helia_peer.mjs
// stdout: {"event":"ready","peerId":...,"addrs":[...]} then one reply per command
// stdin:  {"id":1,"cmd":"add","path":P,"chunkSize":262144,"rawLeaves":true,"cidVersion":1} -> {"id":1,"event":"added","cid":...}
//         {"id":2,"cmd":"dial","addr":MULTIADDR}                                         -> {"id":2,"event":"dialed"}
//         {"id":3,"cmd":"get","cid":C,"path":P,"timeoutMs":60000}                        -> {"id":3,"event":"got","size":N,"ms":T}
//         {"id":4,"cmd":"quit"}
// errors: {"id":..,"event":"error","error":"..."}
// No bootstrap, no DHT, no HTTP gateways or delegated routing: blocks come only from peers we dial.
import './polyfill.mjs'
import { createReadStream, createWriteStream } from 'node:fs'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { createHeliaLight } from 'helia'
import { withLibp2pLight } from '@helia/libp2p'
import { withBitswap } from '@helia/bitswap'
import { unixfs } from '@helia/unixfs'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const helia = withBitswap(withLibp2pLight(createHeliaLight(), {
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify() }
}))
await helia.start()
const fs = unixfs(helia)
out({ event: 'ready', peerId: helia.libp2p.peerId.toString(), addrs: helia.libp2p.getMultiaddrs().map(String) })

async function handle (cmd) {
  if (cmd.cmd === 'add') {
    const cid = await fs.addByteStream(createReadStream(cmd.path), {
      chunker: fixedSize({ chunkSize: cmd.chunkSize ?? 262144 }), // @helia/unixfs 8 defaults to 1 MiB
      layout: balanced({ maxChildrenPerNode: cmd.maxChildren ?? 1024 }),
      rawLeaves: cmd.rawLeaves ?? true,
      cidVersion: cmd.cidVersion ?? 1
    })
    return { event: 'added', cid: cid.toString() }
  }
  if (cmd.cmd === 'dial') {
    await helia.libp2p.dial(multiaddr(cmd.addr), { signal: AbortSignal.timeout(10000) })
    return { event: 'dialed' }
  }
  if (cmd.cmd === 'get') {
    const started = Date.now()
    const file = createWriteStream(cmd.path)
    let size = 0
    // a string: ipfs-unixfs-exporter bundles multiformats 14, whose CID check rejects our multiformats 13 CID objects
    for await (const chunk of fs.cat(CID.parse(cmd.cid).toString(), { signal: AbortSignal.timeout(cmd.timeoutMs ?? 60000) })) {
      size += chunk.length
      if (!file.write(chunk)) await once(file, 'drain')
    }
    file.end()
    await once(file, 'finish')
    return { event: 'got', size, ms: Date.now() - started }
  }
  throw new Error(`unknown command ${cmd.cmd}`)
}

const rl = createInterface({ input: process.stdin })
for await (const line of rl) {
  if (!line.trim()) continue
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch (err) {
    out({ event: 'error', error: `bad JSON: ${err.message}` })
    continue
  }
  if (cmd.cmd === 'quit') break
  try {
    out({ id: cmd.id, ...(await handle(cmd)) })
  } catch (err) {
    out({ id: cmd.id, event: 'error', error: `${err.name}: ${err.message}` })
  }
}
await helia.stop()
process.exit(0)
