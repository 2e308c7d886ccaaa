package webhooks

// WithCommitHook returns opts with f run before each of the writer's
// commits, told how many attempts' results the commit holds: tests make
// commits slow, hold them for ever, or fail them (f's error) with it.
func WithCommitHook(opts Options, f func(results int) error) Options {
	opts.commitHook = f
	return opts
}
