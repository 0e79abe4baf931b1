# fish completion for fdclient(1): commands, flags, and the names the
# running holder holds ("fdclient list --names", on the --socket given on
# the command line if any). Installed in
# /usr/share/fish/vendor_completions.d.

function __fdclient_names
    set -l tokens (commandline -opc)
    set -l sock
    if set -l i (contains -i -- --socket $tokens)
        set sock --socket $tokens[(math $i + 1)]
    end
    fdclient $sock --timeout 2s list --names 2>/dev/null
end

# __fdclient_needs_name succeeds when the word being completed is a NAME:
# the first argument of listen, store, adopt and delete, any of exec's
# before "--".
function __fdclient_needs_name
    set -l tokens (commandline -opc)
    set -l cmd
    set -l npos 0
    set -l skip 0
    for tok in $tokens[2..-1]
        if test $skip -eq 1
            set skip 0
            continue
        end
        switch $tok
            case --socket --timeout --ttl --wait --fd --to --pid
                set skip 1
            case '-*'
            case '*'
                if test -z "$cmd"
                    set cmd $tok
                else
                    set npos (math $npos + 1)
                end
        end
    end
    switch $cmd
        case exec
            not contains -- -- $tokens
        case listen store adopt delete
            test $npos -eq 0
        case '*'
            return 1
    end
end

set -l cmds listen store adopt exec list delete transfer help
complete -c fdclient -f
complete -c fdclient -n "not __fish_seen_subcommand_from $cmds" -l socket -r -F -d 'the holder socket'
complete -c fdclient -n "not __fish_seen_subcommand_from $cmds" -l timeout -x -d 'limit for each request'
complete -c fdclient -n "not __fish_seen_subcommand_from $cmds" -l version -d 'print the version'
complete -c fdclient -n "not __fish_seen_subcommand_from $cmds" -s h -l help -d 'print the help'
complete -c fdclient -n "not __fish_seen_subcommand_from $cmds" -a listen -d 'bind a socket, store it, print its address'
complete -c fdclient -n "not __fish_seen_subcommand_from $cmds" -a store -d 'store a descriptor of fdclient'
complete -c fdclient -n "not __fish_seen_subcommand_from $cmds" -a adopt -d 'store the socket of a running process'
complete -c fdclient -n "not __fish_seen_subcommand_from $cmds" -a exec -d 'run a program with held sockets'
complete -c fdclient -n "not __fish_seen_subcommand_from $cmds" -a list -d 'show the held entries'
complete -c fdclient -n "not __fish_seen_subcommand_from $cmds" -a delete -d 'remove an entry'
complete -c fdclient -n "not __fish_seen_subcommand_from $cmds" -a transfer -d 'copy entries to another holder'
complete -c fdclient -n "not __fish_seen_subcommand_from $cmds" -a help -d 'print the help'
complete -c fdclient -n "__fish_seen_subcommand_from listen store adopt" -l replace -d 'swap the new socket in if NAME is held'
complete -c fdclient -n "__fish_seen_subcommand_from listen store adopt" -l ttl -x -d 'forget the entry after DUR'
complete -c fdclient -n "__fish_seen_subcommand_from store adopt" -l fd -x -d 'the descriptor to store'
complete -c fdclient -n "__fish_seen_subcommand_from adopt" -l pid -x -a "(__fish_complete_pids)" -d 'the process whose socket to adopt'
complete -c fdclient -n "__fish_seen_subcommand_from adopt" -l dry-run -d 'print what would be adopted'
complete -c fdclient -n "__fish_seen_subcommand_from exec" -l wait -x -d 'wait up to DUR for NAME to be held'
complete -c fdclient -n "__fish_seen_subcommand_from exec" -l rebind -d 'move a NAME held on another address to ADDRESS'
complete -c fdclient -n "__fish_seen_subcommand_from exec" -l fallback -d 'bind here and start PROG if the holder is unreachable'
complete -c fdclient -n "__fish_seen_subcommand_from list" -l json -d 'print a JSON array'
complete -c fdclient -n "__fish_seen_subcommand_from list" -l names -d 'print the names only'
complete -c fdclient -n "__fish_seen_subcommand_from list" -l watch -d 'show them again every interval'
complete -c fdclient -n "__fish_seen_subcommand_from list" -l interval -x -d 'how often --watch asks the holder'
complete -c fdclient -n "__fish_seen_subcommand_from transfer" -l names -x -d 'only the entries matching GLOB'
complete -c fdclient -n "__fish_seen_subcommand_from transfer" -l replace -d 'replace the entries PATH holds'
complete -c fdclient -n "__fish_seen_subcommand_from transfer" -l to -r -F -d 'the destination holder socket'
complete -c fdclient -n __fdclient_needs_name -a "(__fdclient_names)" -d 'held'
