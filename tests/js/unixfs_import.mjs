// Import files with @helia/unixfs (the real importer code Helia uses) and print the root CIDs.
// Usage: node unixfs_import.mjs '<json list of jobs>'
//   job: {path, chunkSize, maxChildren, rawLeaves, cidVersion, dumpBlocks?}
// Output: one JSON line per job: {path, cid, blocks?: {cid: base64}}
// No networking: @helia/unixfs only needs a blockstore, so an in-memory one is enough here.
import './polyfill.mjs'
import { createReadStream } from 'node:fs'
import { unixfs } from '@helia/unixfs'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { MemoryBlockstore } from 'blockstore-core/memory'

// MemoryBlockstore keys by multihash and lists blocks as raw CIDs: record the CIDs the importer used
class RecordingBlockstore extends MemoryBlockstore {
  constructor () {
    super()
    this.written = new Map()
  }

  put (key, val, options) {
    if (!(val instanceof Uint8Array)) throw new Error('importer wrote a streamed block')
    this.written.set(key.toString(), val)
    return super.put(key, val, options)
  }
}

const jobs = JSON.parse(process.argv[2])
for (const job of jobs) {
  const blockstore = new RecordingBlockstore()
  const fs = unixfs({ blockstore })
  const cid = await fs.addByteStream(createReadStream(job.path), {
    chunker: fixedSize({ chunkSize: job.chunkSize }),
    layout: balanced({ maxChildrenPerNode: job.maxChildren }),
    rawLeaves: job.rawLeaves,
    cidVersion: job.cidVersion
  })
  const out = { path: job.path, cid: cid.toString() }
  if (job.dumpBlocks) {
    out.blocks = {}
    for (const [c, bytes] of blockstore.written) {
      out.blocks[c] = Buffer.from(bytes).toString('base64')
    }
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}
