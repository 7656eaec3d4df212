// Uploading a file straight to Blob Storage with the valet-key URL: in blocks, with progress, cancellable.

import { api } from "./api.js";

const BLOCK_BYTES = 4 * 1024 * 1024;
const STORAGE_VERSION = "2021-08-06";

export class UploadCancelled extends Error {
  constructor() {
    super("The upload was cancelled.");
    this.name = "UploadCancelled";
  }
}

function blockId(index) {
  // Block ids must be base64 and all of the same length.
  return btoa(`block-${String(index).padStart(6, "0")}`);
}

function put(url, body, headers, { signal, onProgress }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => onProgress && onProgress(event.loaded);
    xhr.onload = () => (xhr.status >= 200 && xhr.status < 300
      ? resolve()
      : reject(new Error(`Blob Storage refused a block (${xhr.status}); try again.`)));
    xhr.onerror = () => reject(new Error("The upload lost its connection; try again."));
    xhr.onabort = () => reject(new UploadCancelled());
    if (signal) {
      if (signal.aborted) { xhr.abort(); return; }
      signal.addEventListener("abort", () => xhr.abort(), { once: true });
    }
    xhr.send(body);
  });
}

/**
 * Upload `file`: ask for an upload URL, PUT the blocks, commit the block list, then commit the upload.
 * `onProgress(sentBytes, totalBytes)` is called as bytes go out. Returns the upload id.
 */
export async function uploadFile(file, { onProgress = () => {}, signal } = {}) {
  const created = await api.post("/uploads", { fileName: file.name, size: file.size }, { signal });
  const ids = [];
  let done = 0;
  for (let start = 0, index = 0; start < file.size || index === 0; start += BLOCK_BYTES, index += 1) {
    const block = file.slice(start, Math.min(start + BLOCK_BYTES, file.size));
    const id = blockId(index);
    await put(`${created.uploadUrl}&comp=block&blockid=${encodeURIComponent(id)}`, block,
      { "x-ms-version": STORAGE_VERSION },
      { signal, onProgress: (sent) => onProgress(done + sent, file.size) });
    done += block.size;
    ids.push(id);
    onProgress(done, file.size);
    if (file.size === 0) break;
  }
  const list = `<?xml version="1.0" encoding="utf-8"?><BlockList>${ids.map((id) => `<Latest>${id}</Latest>`).join("")}</BlockList>`;
  await put(`${created.uploadUrl}&comp=blocklist`, list,
    { "x-ms-version": STORAGE_VERSION, "x-ms-blob-content-type": "text/csv", "Content-Type": "application/xml" },
    { signal });
  await api.post(`/uploads/${created.id}/commit`, {}, { signal });
  return created.id;
}
