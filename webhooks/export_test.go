package webhooks

// WithCommitHook returns opts with f run before each of the writer's
// commits, told how many attempts' results the commit holds: tests make
// commits slow, or hold them for ever, with it.
func WithCommitHook(opts Options, f func(results int)) Options {
	opts.commitHook = f
	return opts
}
