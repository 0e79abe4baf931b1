# bash completion for fdclient(1): commands, flags, and the names the
# running holder holds ("fdclient list --names", on the --socket given on
# the command line if any). Installed in
# /usr/share/bash-completion/completions/fdclient.

# _fdclient_names prints the held names, one a line; nothing when no holder
# answers within two seconds.
_fdclient_names() {
	local i sock=()
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		--socket | -socket) sock=(--socket "${COMP_WORDS[i + 1]}") ;;
		esac
	done
	fdclient "${sock[@]}" --timeout 2s list --names 2>/dev/null
}

_fdclient() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
	local i cmd='' cmdidx=0 npos=0 flags=''
	COMPREPLY=()
	# The command is the first word that is neither a global flag nor the
	# value of one.
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		--socket | -socket | --timeout | -timeout) ((i++)) ;;
		-*) ;;
		*)
			cmd=${COMP_WORDS[i]} cmdidx=$i
			break
			;;
		esac
	done
	case $prev in
	--socket | -socket | --to | -to)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--pid | -pid)
		COMPREPLY=($(compgen -W "$(ps -e -o pid= 2>/dev/null)" -- "$cur"))
		return
		;;
	--timeout | -timeout | --ttl | -ttl | --wait | -wait | --fd | -fd)
		return # a duration or a number: nothing to offer
		;;
	--names | -names)
		[[ $cmd == transfer ]] && return # a glob
		;;
	esac
	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W '--socket --timeout --version --help -h' -- "$cur"))
		else
			COMPREPLY=($(compgen -W 'listen store adopt exec list delete transfer help' -- "$cur"))
		fi
		return
	fi
	# Past "exec ... --" comes the program and its arguments.
	for ((i = cmdidx + 1; i < COMP_CWORD; i++)); do
		if [[ $cmd == exec && ${COMP_WORDS[i]} == -- ]]; then
			if ((i + 1 == COMP_CWORD)); then
				COMPREPLY=($(compgen -c -- "$cur"))
			else
				COMPREPLY=($(compgen -f -- "$cur"))
			fi
			return
		fi
		case ${COMP_WORDS[i]} in
		--ttl | -ttl | --wait | -wait | --fd | -fd | --to | -to | --pid | -pid | --interval | -interval) ((i++)) ;;
		--names | -names) [[ $cmd == transfer ]] && ((i++)) ;;
		-*) ;;
		*) ((npos++)) ;;
		esac
	done
	case $cmd in
	listen) flags='--replace --ttl' ;;
	store) flags='--fd --replace --ttl' ;;
	adopt) flags='--pid --fd --replace --ttl --dry-run' ;;
	exec) flags='--wait --rebind --fallback' ;;
	list) flags='--json --names --watch --interval' ;;
	transfer) flags='--names --replace --to' ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$flags" -- "$cur"))
		return
	fi
	# NAME: the first argument of listen, store, adopt and delete, any of
	# exec's.
	case $cmd in
	listen | store | adopt | delete) ((npos == 0)) && COMPREPLY=($(compgen -W "$(_fdclient_names)" -- "$cur")) ;;
	exec) COMPREPLY=($(compgen -W "$(_fdclient_names)" -- "$cur")) ;;
	esac
}
complete -F _fdclient fdclient
