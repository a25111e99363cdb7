// The end-to-end tests run brokers, daemons and child processes and one of them sets process-wide environment
// variables (NOTIFY_SOCKET); running them one after another keeps them independent and the machine responsive.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
