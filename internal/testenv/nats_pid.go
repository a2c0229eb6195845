package testenv

// Pid returns the process id of the node's nats-server while it runs (a
// benchmark reads its CPU time from /proc), or 0.
func (n *NATSNode) Pid() int {
	n.proc.mu.Lock()
	defer n.proc.mu.Unlock()
	if n.proc.cmd == nil || n.proc.cmd.Process == nil {
		return 0
	}
	return n.proc.cmd.Process.Pid
}
