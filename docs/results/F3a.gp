# F3a: Relative kernel change ‖Θ(w) - Θ(w_0)‖ / ‖Θ(w_0)‖ (fc softplus L=5 mnist n=5000 hinge mu=1000) (written by lazyfeat report; data inline)
set encoding utf8
$P0S0 << EOD
0.001 5673839.894 542845.31
0.0022 1065330.63 123207.9525
0.0046 388094.3137 24860.59136
0.01 109246.4729 8686.044098
0.022 40235.86004 9979.28817
0.046 8175.349517 1316.204698
0.1 4166.853295 829.5540003
0.22 1335.216439 190.5573967
1 78.63485079 18.1699711
10 1.648187409 0.2055850499
100 0.03051981046 0.003521602984
1000 0.001797772657 0.000194268128
EOD
$P1S0 << EOD
0.01 5673839.894 542845.31
0.022 1065330.63 123207.9525
0.046 388094.3137 24860.59136
0.1 109246.4729 8686.044098
0.22 40235.86004 9979.28817
0.46 8175.349517 1316.204698
1 4166.853295 829.5540003
2.2 1335.216439 190.5573967
10 78.63485079 18.1699711
100 1.648187409 0.2055850499
1000 0.03051981046 0.003521602984
10000 0.001797772657 0.000194268128
EOD
set terminal pngcairo enhanced size 1120,440 font 'DejaVu Sans,10'
set output "/work/main/docs/results.new/F3a.png"
set multiplot layout 1,2
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "vs α"
set xlabel "α"
set ylabel "‖Θ - Θ_0‖ / ‖Θ_0‖"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P0S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "vs √h α"
set xlabel "√h α"
set ylabel "‖Θ - Θ_0‖ / ‖Θ_0‖"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P1S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset multiplot
set terminal svg enhanced size 1120,440 font 'DejaVu Sans,10' background '#ffffff'
set output "/work/main/docs/results.new/F3a.svg"
set multiplot layout 1,2
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "vs α"
set xlabel "α"
set ylabel "‖Θ - Θ_0‖ / ‖Θ_0‖"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P0S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'
set title "vs √h α"
set xlabel "√h α"
set ylabel "‖Θ - Θ_0‖ / ‖Θ_0‖"
set logscale x; set format x '10^{%L}'
set logscale y; set format y '10^{%L}'
set key inside top right font ',8' spacing 0.9 samplen 2
set grid lw 0.5 lc rgb '#dddddd'
plot $P1S0 using 1:2:3 with yerrorlines lt 1 pt 1 ps 0.7 title "h=100"
unset multiplot
unset output
