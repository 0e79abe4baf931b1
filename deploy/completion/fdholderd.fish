# fish completion for fdholderd(8): its flags and their values. Installed
# in /usr/share/fish/vendor_completions.d.
complete -c fdholderd -f
complete -c fdholderd -l socket -r -F -d 'the control socket to create'
complete -c fdholderd -l socket-mode -x -d 'the socket file mode, in octal'
complete -c fdholderd -l socket-group -x -a '(__fish_complete_groups)' -d 'the socket file group'
complete -c fdholderd -l policy -r -F -d 'the access policy file'
complete -c fdholderd -l max-conns -x -d 'connections served at once'
complete -c fdholderd -l max-conns-per-uid -x -d 'connections served at once for one uid'
complete -c fdholderd -l max-entries -x -d 'entries held in total'
complete -c fdholderd -l max-entries-per-uid -x -d 'entries held for one uid'
complete -c fdholderd -l idle-timeout -x -d 'close a connection idle this long'
complete -c fdholderd -l request-timeout -x -d 'close a connection that does not read its reply'
complete -c fdholderd -l fd-reserve -x -d 'descriptors kept free'
complete -c fdholderd -l log-format -x -a 'console json' -d 'the log format'
complete -c fdholderd -l log-level -x -a 'debug info warn error' -d 'the log level'
complete -c fdholderd -l check -d 'print "fdholderd: ok" and exit'
complete -c fdholderd -l version -d 'print the version'
complete -c fdholderd -s h -l help -d 'print the help'
