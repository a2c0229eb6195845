package server

// CheckedHandler is a Handler that may refuse a message: HandleChecked returns an error when the message
// was not taken (the pipeline refusing it at shutdown, or in cluster mode the stream not acknowledging it,
// docs/cluster.md). The server then hands nothing more of that upload and does not confirm it, so that the
// UITD sends it again; a Handler that is not one is assumed to take every message.
type CheckedHandler interface {
	Handler
	HandleChecked(topic string, payload []byte) error
}

// CheckedHandlerFunc adapts a function to CheckedHandler.
type CheckedHandlerFunc func(topic string, payload []byte) error

// Handle calls f and drops its error (Handler).
func (f CheckedHandlerFunc) Handle(topic string, payload []byte) { f(topic, payload) }

// HandleChecked calls f.
func (f CheckedHandlerFunc) HandleChecked(topic string, payload []byte) error {
	return f(topic, payload)
}

// handle hands one message of st's current upload to the handler (st.mu held). After a message was refused
// the rest of the upload is not handed: commit returns the refusal.
func (s *Server) handle(st *uitdState, topic string, payload []byte) {
	if st.refused != nil {
		return
	}
	if s.checked != nil {
		st.refused = s.checked.HandleChecked(topic, payload)
		return
	}
	s.h.Handle(topic, payload)
}
