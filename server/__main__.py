from earshot.server.cli import main

raise SystemExit(main())
