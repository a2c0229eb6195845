// Package responder serves the people in the loop (issue 16): the one-tap
// responder page (H5, zh-CN) that a micro fire station's member opens from
// the link in a push or robot message to take an alarm through 接警, 出动,
// 到场 and 处置完毕, and the 可视化运管 console of the command centre
// (live board, re-dispatch, the 考核 table). Both are plain HTML, CSS and
// JavaScript embedded in the binary; they act through alarms.Manager.
//
// A responder link is per alarm and per station, signed with a key derived
// from alarms.secret, and expires (docs/console.md). Its token travels in
// the URL's fragment, which browsers never send, and reaches firewatch in
// a request header, so it never appears in a request line or access log.
package responder
