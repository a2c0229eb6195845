// Package onenet decodes the HTTP data push (HTTP推送) of China Mobile's
// OneNET platform: the URL verification handshake (GET with msg, nonce and
// signature = Base64(MD5(token+nonce+msg)), answered with msg alone), and
// signed POSTs in plain or AES mode carrying data points (type 1),
// online/offline (type 2) and cached-command results (type 7). It does no
// I/O. The envelope and the AES details are not fully confirmed by official
// documentation; docs/nbiot.md says which parts are assumptions.
package onenet
