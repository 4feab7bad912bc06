; Inno Setup 6 script for kubetray's Windows installer. build.ps1 runs it as
;   ISCC /DAppVersion=0.1.0 /DBundleDir=<the PyInstaller one-folder bundle> /O<output folder> kubetray.iss
; A per-user install (no administrator rights) into %LOCALAPPDATA%\Programs\kubetray, a Start
; menu entry, and an optional task "Start kubetray when I log in", which writes the same value
; kubetray's own "Start at login" writes: HKCU\Software\Microsoft\Windows\CurrentVersion\Run,
; value "kubetray" = "<app>\kubetray.exe" (trayapp/platform/autostart.py, RegistryAutostart).
; Uninstalling stops a running kubetray and removes that value however it was set.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef BundleDir
  #define BundleDir "..\build\dist\kubetray"
#endif

[Setup]
AppId={{6B7C2E0A-4F0D-4B8E-9C55-2D1A8E6F3B41}
AppName=kubetray
AppVersion={#AppVersion}
AppVerName=kubetray {#AppVersion}
AppPublisher=kubetray developers
DefaultDirName={autopf}\kubetray
DefaultGroupName=kubetray
DisableProgramGroupPage=yes
; Per user only. No PrivilegesRequiredOverridesAllowed=dialog: choosing "all users" there runs
; Setup in administrative install mode ({autopf} = Program Files), where the HKCU entries below
; would land in the administrator's profile, not the user's (Inno Setup help, "Non
; Administrative Install Mode"), and kubetray itself only reads HKCU's Run key.
PrivilegesRequired=lowest
; x64compatible needs Inno Setup 6.3 or later (older 6.x: x64).
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputBaseFilename=kubetray-{#AppVersion}-windows-x64-setup
SetupIconFile=..\..\resources\icons\kubetray.ico
UninstallDisplayIcon={app}\kubetray.exe
Compression=lzma2
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes

[Tasks]
Name: "autostart"; Description: "Start kubetray when I log in"; GroupDescription: "Start at login:"
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\kubetray"; Filename: "{app}\kubetray.exe"
Name: "{autodesktop}\kubetray"; Filename: "{app}\kubetray.exe"; Tasks: desktopicon

[Registry]
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: string; ValueName: "kubetray"; ValueData: """{app}\kubetray.exe"""; Flags: uninsdeletevalue; Tasks: autostart

[Run]
Filename: "{app}\kubetray.exe"; Description: "Start kubetray now"; Flags: nowait postinstall skipifsilent

[UninstallRun]
Filename: "{sys}\taskkill.exe"; Parameters: "/F /T /IM kubetray.exe"; Flags: runhidden; RunOnceId: "StopKubetray"

[Code]
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usPostUninstall then
  begin
    { The value may come from kubetray's own menu rather than the task; remove it either way. }
    RegDeleteValue(HKEY_CURRENT_USER, 'Software\Microsoft\Windows\CurrentVersion\Run', 'kubetray');
    { desktop-notifier registers the toast sender on first use (backends/winrt.py, register_hkey:
      app id = the app name, with an IconUri pointing into the install folder); kubetray never
      removes it. }
    RegDeleteKeyIncludingSubkeys(HKEY_CURRENT_USER, 'Software\Classes\AppUserModelId\kubetray');
  end;
end;
