// A js-libp2p gossipsub peer that speaks dainode's signed envelope, for the interop test.
//
// usage: node tests/js/gossip_peer.mjs --connect MULTIADDR --topic TOPIC --eth-key HEX
// stdout: one JSON object per line: {"event":"ready",...}, {"event":"message","data":HEX,...},
//         {"event":"published",...}, {"event":"error",...}
// stdin:  one JSON command per line: {"cmd":"publish","type":"t","body":{...}} | {"cmd":"quit"}
import './polyfill.mjs'
import { createInterface } from 'node:readline'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { multiaddr } from '@multiformats/multiaddr'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { keccak_256 } from '@noble/hashes/sha3.js'

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]])
  return acc
}, []))
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const hex = (b) => Buffer.from(b).toString('hex')

// --- msgpack: the subset dainode envelopes use, encoded exactly as Python's msgpack.packb ---
function pack (v) {
  const parts = []
  const u8 = (...b) => parts.push(Uint8Array.from(b))
  const be = (n, bytes) => { const a = []; let x = BigInt(n); for (let i = 0; i < bytes; i++) { a.unshift(Number(x & 0xffn)); x >>= 8n } return a }
  const enc = (x) => {
    if (x === null || x === undefined) u8(0xc0)
    else if (x === true) u8(0xc3)
    else if (x === false) u8(0xc2)
    else if (typeof x === 'number' && Number.isInteger(x)) {
      if (x >= 0) {
        if (x < 128) u8(x)
        else if (x < 0x100) u8(0xcc, x)
        else if (x < 0x10000) u8(0xcd, ...be(x, 2))
        else if (x < 0x100000000) u8(0xce, ...be(x, 4))
        else u8(0xcf, ...be(x, 8))
      } else if (x >= -32) u8(0x100 + x)
      else throw new Error('negative ints below -32 not needed here')
    } else if (typeof x === 'number') {
      const b = Buffer.alloc(9); b[0] = 0xcb; b.writeDoubleBE(x, 1); parts.push(b)
    } else if (typeof x === 'string') {
      const s = Buffer.from(x, 'utf8'); const n = s.length
      if (n < 32) u8(0xa0 | n); else if (n < 0x100) u8(0xd9, n); else if (n < 0x10000) u8(0xda, ...be(n, 2)); else u8(0xdb, ...be(n, 4))
      parts.push(s)
    } else if (x instanceof Uint8Array) {
      const n = x.length
      if (n < 0x100) u8(0xc4, n); else if (n < 0x10000) u8(0xc5, ...be(n, 2)); else u8(0xc6, ...be(n, 4))
      parts.push(x)
    } else if (Array.isArray(x)) {
      const n = x.length
      if (n < 16) u8(0x90 | n); else u8(0xdc, ...be(n, 2))
      x.forEach(enc)
    } else if (typeof x === 'object') {
      const keys = Object.keys(x); const n = keys.length
      if (n < 16) u8(0x80 | n); else u8(0xde, ...be(n, 2))
      for (const k of keys) { enc(k); enc(x[k]) }
    } else throw new Error(`cannot pack ${typeof x}`)
  }
  enc(v)
  return Buffer.concat(parts)
}

// --- Ethereum account: address (EIP-55) and EIP-191 personal_sign ---
const ethKey = Uint8Array.from(Buffer.from(args['eth-key'].replace(/^0x/, ''), 'hex'))
const pub = secp256k1.getPublicKey(ethKey, false)
const lower = hex(keccak_256(pub.slice(1)).slice(-20))
const addrHash = hex(keccak_256(Buffer.from(lower, 'ascii')))
const ethAddress = '0x' + [...lower].map((c, i) => parseInt(addrHash[i], 16) >= 8 ? c.toUpperCase() : c).join('')

function personalSign (payload) {
  const digest = keccak_256(Buffer.concat([Buffer.from(`\x19Ethereum Signed Message:\n${payload.length}`, 'utf8'), payload]))
  const sig = secp256k1.sign(digest, ethKey, { prehash: false, format: 'recovered' }) // [recovery, r(32), s(32)]
  return Buffer.concat([Buffer.from(sig.slice(1, 65)), Buffer.from([27 + sig[0]])])
}

function seal (topic, type, body) {
  const ts = Date.now()
  const payload = Buffer.concat([Buffer.from('dai-gossip', 'ascii'), pack([1, topic, type, body, ethAddress, ts])])
  return pack({ v: 1, type, body, sender: ethAddress, ts, sig: personalSign(payload) })
}

// --- the libp2p node ---
const topic = args.topic
const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    pubsub: gossipsub({ emitSelf: false, allowPublishToZeroTopicPeers: false, heartbeatInterval: 1000 })
  }
})
const pubsub = node.services.pubsub
pubsub.addEventListener('message', (evt) => {
  const m = evt.detail
  if (m.topic !== topic) return
  out({ event: 'message', topic: m.topic, from: m.from?.toString(), data: hex(m.data) })
})
pubsub.subscribe(topic)
try {
  await node.dial(multiaddr(args.connect))
} catch (err) {
  out({ event: 'error', error: `dial failed: ${err.message}` })
  process.exit(1)
}
// Ready once the dainode is in our mesh for the topic (so a publish has somewhere to go).
const deadline = Date.now() + 20000
while (pubsub.getMeshPeers(topic).length === 0) {
  if (Date.now() > deadline) { out({ event: 'error', error: 'no mesh peer within 20 s' }); process.exit(1) }
  await new Promise((resolve) => setTimeout(resolve, 50))
}
out({ event: 'ready', peerId: node.peerId.toString(), address: ethAddress, mesh: pubsub.getMeshPeers(topic).map(String) })

const rl = createInterface({ input: process.stdin })
for await (const line of rl) {
  if (!line.trim()) continue
  const cmd = JSON.parse(line)
  if (cmd.cmd === 'quit') break
  if (cmd.cmd === 'publish') {
    try {
      const res = await pubsub.publish(topic, seal(topic, cmd.type ?? 'js', cmd.body ?? {}))
      out({ event: 'published', recipients: res.recipients.map(String) })
    } catch (err) {
      out({ event: 'error', error: `publish failed: ${err.message}` })
    }
  }
}
await node.stop()
process.exit(0)
