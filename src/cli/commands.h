// The subcommands of `slicer`. Each takes the arguments after its own name (argv[0] is the
// subcommand name) and returns the process exit status. main.cc only dispatches.
#ifndef SLICER_CLI_COMMANDS_H_
#define SLICER_CLI_COMMANDS_H_

namespace slicer::cli {

int DevicePluginMain(int argc, char** argv);  // slicer device-plugin
int ConfigMain(int argc, char** argv);        // slicer config validate FILE...
int RunMain(int argc, char** argv);           // slicer run [--memory S] [--weight W] -- CMD...
int DemoMain(int argc, char** argv);          // slicer demo (src/demo)
int ArbiterMain(int argc, char** argv);       // slicer arbiter (node daemon)
int StatusMain(int argc, char** argv);        // slicer status (live table from /metrics)
int MpsDaemonMain(int argc, char** argv);     // slicer mps-daemon (MPS control daemons)

}  // namespace slicer::cli

#endif  // SLICER_CLI_COMMANDS_H_
